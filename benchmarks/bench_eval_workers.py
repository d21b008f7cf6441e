"""One model's eval on a 2-core CPU, three ways, measured in one run (`--workers` for local models):
  1 process x 1 thread    the default of every study here (`--threads 1`)
  1 process x 2 threads   the same process given both cores
  2 processes x 1 thread  `--workers 2 --threads 1`: every 2nd task in each process, each its own batch
Same tasks, same batch size per process, greedy: the trajectories must be the same in all three.
Target (issue 15, the cost of the 50-task evals): 2 processes >= 1.6x one single-thread process, and
ahead of one two-thread process. Run it with both cores idle.
Usage: python benchmarks/bench_eval_workers.py [--model smollm2-135m] [--env hotpotqa] [--episodes 16]
                                               [--batch 8] [--max-steps 4] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sad_eval.agents.hf import DecodingConfig
from sad_eval.agents.registry import AgentSpec
from sad_eval.envs import get_spec
from sad_eval.run import RunConfig, execute

MODES = (("1 proc x 1 thread", 1, 1), ("1 proc x 2 threads", 1, 2), ("2 procs x 1 thread", 2, 1))


def run_mode(model: str, env: str, n: int, batch: int, max_steps: int, workers: int, threads: int,
             out: Path) -> tuple[float, dict]:
    spec = AgentSpec(agent=model, env=env, threads=threads, decoding=DecodingConfig(max_new_tokens=96))
    cfg = RunConfig(spec=spec, split=get_spec(env).default_split, out=out, batch=batch, workers=workers,
                    limit=n, env_kwargs={"max_steps": max_steps})
    t0 = time.perf_counter()
    eps = execute(cfg, progress=False)
    return time.perf_counter() - t0, {e.task_id: [(s.reasoning, s.action) for s in e.steps] for e in eps}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--env", default="hotpotqa")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=4)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name, workers, threads in MODES:
            secs, turns = run_mode(a.model, a.env, a.episodes, a.batch, a.max_steps, workers, threads,
                                   Path(tmp) / f"w{workers}t{threads}.jsonl")
            first = first if first is not None else turns
            same = sum(turns.get(t) == first[t] for t in first)
            rows.append({"mode": name, "workers": workers, "threads": threads, "seconds": round(secs, 1),
                         "episodes_per_min": round(60 * len(turns) / secs, 2), "same_as_first": f"{same}/{len(first)}"})
            print(f"{name:22s} {secs:7.1f} s  {rows[-1]['episodes_per_min']:6.2f} ep/min  same {same}/{len(first)}",
                  flush=True)
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup_vs_1x1"] = round(base / r["seconds"], 2)
    print("speedup vs 1 proc x 1 thread: " + ", ".join(f"{r['mode']} {r['speedup_vs_1x1']}x" for r in rows))
    result = {"model": a.model, "env": a.env, "episodes": a.episodes, "batch": a.batch, "max_steps": a.max_steps,
              "rows": rows}
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
