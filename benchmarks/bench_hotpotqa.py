"""HotPotQA-ReAct wiki store: index build and load time, search and lookup latency (p50/p99).

Runs over the full corpus (32,591 pages) of the installed data. Usage:

    .venv/bin/python benchmarks/bench_hotpotqa.py [--queries 2000] [--out FILE.json]

- build: a fresh index (pages, question table, BM25) into a temporary folder, from the data file;
- load: reading that index back (pickle + bm25s), in-process, best of 3;
- env: constructing ``HotPotQAEnv`` with the index already built (checksum + load + splits);
- search hit: ``env.step("search[<title>]")`` with a random title, lower-cased;
- search miss: ``env.step("search[<words>]")`` with 2-4 random words of a random question, which
  misses the titles and runs the "Similar:" path (base-title table + BM25 top-5);
- lookup: ``env.step("lookup[<word>]")`` with a random word of the current page.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sad_eval.data import require
from sad_eval.envs import wiki_store
from sad_eval.envs.hotpotqa import HotPotQAEnv


def pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {"n": len(xs), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "mean_ms": round(float(a.mean()), 3)}


def timed_steps(env: HotPotQAEnv, actions: list[str], reset_every: int = 6) -> list[float]:
    out = []
    for i, a in enumerate(actions):
        if i % reset_every == 0:
            env.reset(options={"index": i})
        t0 = time.perf_counter()
        env.step(a)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(0)
    source = require(wiki_store.SOURCE_REL)
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}"}

    tmp = Path(tempfile.mkdtemp(prefix="bench-hotpotqa-"))
    try:
        t0 = time.perf_counter()
        stats = wiki_store.build_index(source, tmp / "index")
        result["build_s"] = round(time.perf_counter() - t0, 2)
        result["titles"] = stats.titles
        result["index_mb"] = round(sum(p.stat().st_size for p in (tmp / "index").rglob("*") if p.is_file()) / 2**20, 1)
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            wiki_store.load_index(tmp / "index")
            loads.append(time.perf_counter() - t0)
        result["load_s"] = round(min(loads), 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    wiki_store.ensure_index()  # the real cached index
    wiki_store.clear_cache()
    t0 = time.perf_counter()
    env = HotPotQAEnv(split="dev", max_steps=10**9)
    result["env_init_s"] = round(time.perf_counter() - t0, 3)
    store = env.store

    n = args.queries
    titles = rng.sample(store.titles, n)
    hits = [f"search[{t.lower()}]" for t in titles]
    questions = [q["question"] for q in store.questions.values()]
    misses = []
    while len(misses) < n:
        words = rng.choice(questions).rstrip("?").split()
        k = rng.randint(2, 4)
        i = rng.randrange(max(1, len(words) - k))
        q = " ".join(words[i:i + k])
        if store.resolve(q) is None:
            misses.append(f"search[{q}]")
    result["search_hit"] = pct(timed_steps(env, hits))
    result["search_miss"] = pct(timed_steps(env, misses))

    lookups = []
    for t in titles:
        env.reset(options={"index": 0})
        env.step(f"search[{t}]")
        words = " ".join(store.sentences_of(t)).split() or ["x"]
        for _ in range(3):
            w = rng.choice(words).strip(".,;:()\"'")
            t0 = time.perf_counter()
            env.step(f"lookup[{w or 'x'}]")
            lookups.append(time.perf_counter() - t0)
    result["lookup"] = pct(lookups)
    result["bm25_only_miss"] = pct([_time(store.bm25_search, m[7:-1]) for m in misses])
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


def _time(fn, *a) -> float:
    t0 = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
