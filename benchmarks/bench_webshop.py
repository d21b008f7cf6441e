"""Load and speed benchmark of the WebShop server: N concurrent sessions x M requests each.

Each session browses like an agent (search page, searches, result pages, item pages with
options, sub pages) and ends with a purchase. Reported: errors (must be 0), p50/p99 latency,
requests/s, and session isolation: every session's reward must equal the reward its *own* goal
gives the product it bought (half buy their goal product with the goal options -> 1.0; half
buy the next session's goal product -> what the formula gives for their own goal).

    python benchmarks/bench_webshop.py [--sessions 32] [--requests 50] [--url URL] [--json out.json]

Without --url it starts the bundled server on a free loopback port and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sad_eval.envs.webshop.catalog import load_catalog  # noqa: E402
from sad_eval.envs.webshop.goals import load_goals  # noqa: E402
from sad_eval.envs.webshop.html_text import parse_page  # noqa: E402
from sad_eval.envs.webshop.reward import get_reward  # noqa: E402


def q(s: object) -> str:
    return quote(str(s), safe="")


def session_urls(base: str, sid: str, goal: dict, n: int, buy_asin: str, buy_opts: dict) -> list[str]:
    """n GET URLs: browsing, then the purchase as the last one."""
    words = goal["instruction_text"].lower().split()[:8]
    kw = q(repr(words))
    asin = goal["asin"]
    opts = goal["goal_options"]
    cycle = [f"{base}/search_results/{sid}/{kw}/1", f"{base}/search_results/{sid}/{kw}/2",
             f"{base}/item_page/{sid}/{asin}/{kw}/1/%7B%7D", f"{base}/item_page/{sid}/{asin}/{kw}/1/{q(opts)}",
             f"{base}/item_sub_page/{sid}/{asin}/{kw}/1/Features/{q(opts)}",
             f"{base}/item_sub_page/{sid}/{asin}/{kw}/1/Description/{q(opts)}",
             f"{base}/search_results/{sid}/{q('shoes for women')}/1", f"{base}/{sid}"]
    urls = [f"{base}/{sid}"]
    while len(urls) < n - 1:
        urls.append(cycle[(len(urls) - 1) % len(cycle)])
    urls.append(f"{base}/done/{sid}/{buy_asin}/{q(buy_opts)}")
    return urls[:n]


def run(base: str, sessions: int, per_session: int) -> dict:
    catalog, goals = load_catalog(), load_goals().goals
    # distinct goal products per session so that "the neighbour's product" is another product
    picks, seen = [], set()
    for i, g in enumerate(goals):
        if g["asin"] not in seen:
            picks.append(i)
            seen.add(g["asin"])
        if len(picks) == sessions:
            break
    latencies: list[float] = []
    errors: list[str] = []
    isolation: list[tuple[int, int, float, float]] = []  # (session, goal, got, expected)
    lock = threading.Lock()
    barrier = threading.Barrier(sessions)

    def worker(k: int) -> None:
        gi = picks[k]
        goal = goals[gi]
        sid = f"bench{k}_fixed_{gi}"
        if k % 2 == 0:
            buy_asin, buy_opts = goal["asin"], goal["goal_options"]
        else:
            other = goals[picks[(k + 1) % sessions]]
            buy_asin, buy_opts = other["asin"], other["goal_options"]
        expected, _ = get_reward(catalog.by_asin[buy_asin], goal, catalog.prices[buy_asin], buy_opts)
        urls = session_urls(base, sid, goal, per_session, buy_asin, buy_opts)
        lat, errs = [], []
        got = None
        with requests.Session() as http:
            barrier.wait()
            for url in urls:
                t0 = time.perf_counter()
                try:
                    r = http.get(url, timeout=30)
                    dt = time.perf_counter() - t0
                    if r.status_code != 200:
                        errs.append(f"{r.status_code} {url[len(base):][:80]}")
                    elif "/done/" in url:
                        got = parse_page(r.text, r.url).reward
                except requests.RequestException as e:
                    dt = time.perf_counter() - t0
                    errs.append(f"{type(e).__name__} {url[len(base):][:80]}")
                lat.append(dt)
        with lock:
            latencies.extend(lat)
            errors.extend(errs)
            isolation.append((k, gi, -1.0 if got is None else got, expected))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(sessions)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    bad = [(g, got, exp) for _, g, got, exp in isolation if abs(got - exp) > 1e-9]
    return {
        "sessions": sessions, "requests_per_session": per_session, "requests": len(lat),
        "errors": len(errors), "error_samples": errors[:5],
        "p50_ms": round(1000 * statistics.median(lat), 2) if lat else None,
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2) if lat else None,
        "max_ms": round(1000 * lat[-1], 2) if lat else None,
        "wall_s": round(wall, 2), "requests_per_s": round(len(lat) / wall, 1),
        "isolation_ok": not bad and len(isolation) == sessions,
        "isolation_mismatches": bad[:5],
        "reward_own_goal_product": sorted({round(got, 3) for k, _, got, _ in isolation if k % 2 == 0}),
        "reward_neighbour_product": sorted(round(got, 3) for k, _, got, _ in isolation if k % 2 == 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=32)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--url", default=None, help="a running server (default: start the bundled one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    a = ap.parse_args(argv)
    if not 1 <= a.sessions <= 256 or not 2 <= a.requests <= 1000:
        ap.error("--sessions must be 1..256 and --requests 2..1000")
    srv = None
    if a.url is None:
        from sad_eval.envs.webshop.env import _Server

        srv = _Server(None, start_timeout_s=120)
        base = srv.url
    else:
        base = a.url.rstrip("/")
    try:
        out = run(base, a.sessions, a.requests)
    finally:
        if srv is not None:
            srv.stop()
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    ok = out["errors"] == 0 and out["isolation_ok"]
    print(f"{'OK' if ok else 'FAIL'}: {out['requests']} requests, {out['errors']} errors, p50 {out['p50_ms']} ms, "
          f"p99 {out['p99_ms']} ms, {out['requests_per_s']} req/s, isolation {'ok' if out['isolation_ok'] else 'BROKEN'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
