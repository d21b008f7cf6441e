"""HotPotQA oracle over whole splits: EM/F1, steps, and how many of its searches are observable.

A search (or lookup) is observable when its target occurs, as whole words folded for case and
accents, in the question or an earlier observation, or is an entry of an earlier ``Similar:``
list. Usage (the numbers in docs/hotpotqa.md):

    .venv/bin/python benchmarks/bench_hotpotqa_oracle.py [--split dev500] [--max-steps 7] [-n N]
"""

from __future__ import annotations

import argparse
import ast
import re
import time
from collections import Counter

from sad_eval.agents.experts import make_expert
from sad_eval.envs.hotpotqa import DEFAULT_MAX_STEPS, HotPotQAEnv
from sad_eval.envs.wiki_store import fold_title
from sad_eval.harness import run_episode

_MISS = re.compile(r"^Could not find .*\. Similar: (\[.*\])\.$", re.S)
_ACT = re.compile(r"^(search|lookup)\[(.*)\]$", re.S)


def shown_in(texts: list[str], verb: str, arg: str) -> bool:
    if verb == "lookup":
        return any(arg.lower() in t.lower() for t in texts)
    similar = [x for t in texts if (m := _MISS.match(t)) for x in ast.literal_eval(m.group(1))]
    f = fold_title(arg)
    return arg in similar or any(re.search(r"(?<!\w)" + re.escape(f) + r"(?!\w)", fold_title(t)) for t in texts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="dev500")
    ap.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS)
    ap.add_argument("-n", type=int, default=None)
    args = ap.parse_args()
    env = HotPotQAEnv(split=args.split, max_steps=args.max_steps, privileged=True)
    oracle = make_expert("hotpotqa")
    counts, steps = Counter(), Counter()
    t0 = time.perf_counter()
    for tid in env.task_ids[: args.n]:
        ep = run_episode(env, oracle, "hotpotqa", tid, split=args.split)
        counts["episodes"] += 1
        counts["em"] += ep.meta["em"]
        counts["f1"] += ep.meta["f1"]
        steps[len(ep.steps)] += 1
        texts = [ep.prompt]
        for s in ep.steps:
            if m := _ACT.match(s.action):
                counts[m.group(1)] += 1
                counts[m.group(1) + "_shown"] += shown_in(texts, m.group(1), m.group(2).strip() if m.group(1) == "search" else m.group(2))
                counts[m.group(1) + "_missed"] += s.observation.startswith("Could not find")
            texts.append(s.observation)
    n = counts["episodes"]
    print(f"{args.split} n={n} max_steps={args.max_steps} EM={100 * counts['em'] / n:.1f} F1={100 * counts['f1'] / n:.1f} "
          f"searches={counts['search']} observable={counts['search_shown']} "
          f"({100 * counts['search_shown'] / max(1, counts['search']):.1f}%) missed_on_purpose={counts['search_missed']} "
          f"lookups={counts['lookup']} observable={counts['lookup_shown']} steps={dict(sorted(steps.items()))} "
          f"{time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
