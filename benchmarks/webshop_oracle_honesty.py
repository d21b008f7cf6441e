"""The WebShop oracle on N goals: score, success, how often the product it buys is not the goal
product, and how many of its claims are not traceable to what the env showed (the instruction and
the observations so far; see `untraceable_claims`).

    python benchmarks/webshop_oracle_honesty.py [--split train] [--n 200] [--module FILE] [--json out.json]

`--module` runs another version of the oracle module (e.g. the previous one, from git show) for
a before/after comparison; it is built with its own ENV_KWARGS.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sad_eval.envs.webshop.env import WebShopEnv, list_tasks  # noqa: E402
from sad_eval.envs.webshop.goals import load_goals  # noqa: E402
from sad_eval.harness import run_episode  # noqa: E402

_ASIN = re.compile(r"\bB[0-9A-Z]{9}\b")
_MONEY = re.compile(r"\$[\d,]+(?:\.\d+)?")
_QUOTED = re.compile(r"\"([^\"]+?)(?:…)?\"")


def _money_forms(text: str) -> set[str]:
    out = set()
    for m in _MONEY.findall(text):
        try:
            out.add(f"{float(m[1:].replace(',', '')):.2f}")
        except ValueError:
            pass
    return out


def untraceable_claims(episode, instruction: str) -> list[str]:
    """ASINs, dollar amounts and quoted titles in each turn's reasoning that appear neither in
    the instruction nor in an observation the turn had seen."""
    seen = [instruction, episode.prompt]
    bad = []
    for step in episode.steps:
        context = "\n".join(seen)
        numbers = _money_forms(context) | {f"{float(x):.2f}" for x in re.findall(r"\b\d+(?:\.\d+)?\b", context)}
        for a in set(_ASIN.findall(step.reasoning)) | set(_ASIN.findall(step.action)):
            if a not in context:
                bad.append(f"asin {a}")
        for m in _money_forms(step.reasoning):
            if m not in numbers:
                bad.append(f"price ${m}")
        for t in _QUOTED.findall(step.reasoning):
            if t.strip() not in context:
                bad.append(f"title {t[:40]!r}")
        seen.append(step.observation)
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="train")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--module", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.module:
        spec = importlib.util.spec_from_file_location("oracle_under_test", a.module)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    else:
        from sad_eval.agents.experts import webshop as mod
    tasks = list_tasks(a.split)
    step = max(1, len(tasks) // a.n)
    tasks = tasks[::step][: a.n]
    goals = load_goals().goals
    from sad_eval.agents.experts import expert_env_kwargs

    env = WebShopEnv(split=a.split, **expert_env_kwargs("webshop"))
    oracle = mod.make_expert()
    t0 = time.time()
    rows = []
    try:
        for t in tasks:
            ep = run_episode(env, oracle, "webshop", t, split=a.split)
            g = goals[int(t.split("_")[1])]
            bought = ep.meta.get("purchased_asin", "")
            rows.append({"task": t, "score": ep.score, "success": ep.success, "steps": len(ep.steps),
                         "bought": bought, "target": g["asin"], "off_target": bought.upper() != g["asin"],
                         "untraceable": untraceable_claims(ep, g["instruction_text"])})
    finally:
        env.close()
    n = len(rows)
    out = {"split": a.split, "episodes": n, "mean_score": sum(r["score"] for r in rows) / n,
           "success_rate": sum(r["success"] for r in rows) / n,
           "off_target_rate": sum(r["off_target"] for r in rows) / n,
           "off_target_but_success": sum(r["off_target"] and r["success"] for r in rows),
           "episodes_with_untraceable_claims": sum(bool(r["untraceable"]) for r in rows),
           "mean_steps": sum(r["steps"] for r in rows) / n, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(out, indent=1))
    for r in [r for r in rows if r["untraceable"]][:5]:
        print("untraceable:", r["task"], r["untraceable"][:4])
    if a.json:
        a.json.write_text(json.dumps({**out, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
