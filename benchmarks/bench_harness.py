"""Episodes/min of batched lockstep rollouts (batch 16) vs one episode at a time, same model, one run.

The model is the `small` SmolLM2-shaped student (`--size tiny` for the smallest) with random weights (its outputs never parse, so every
episode runs to the step cap: equal work per episode in both modes). Target: ratio >= 6x.
Usage: python benchmarks/bench_harness.py [--episodes 16] [--batch 16] [--size small]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sad_eval.agents.hf import DecodingConfig
from sad_eval.agents.registry import AgentSpec
from sad_eval.run import RunConfig, execute


MAX_NEW = 64  # a ReAct turn (reasoning + action) is typically 30-60 tokens


def build_checkpoint(size: str, where: Path) -> Path:
    from sad_eval.distill.students import build_student
    from transformers import AutoTokenizer

    model, tok_path = build_student(size, seed=0)
    model.save_pretrained(where)
    AutoTokenizer.from_pretrained(tok_path).save_pretrained(where)
    return where


def timed(ckpt: Path, batch: int, episodes: int, out: Path) -> tuple[float, list]:
    spec = AgentSpec(agent=str(ckpt), env="hotpotqa", decoding=DecodingConfig(max_new_tokens=MAX_NEW))
    cfg = RunConfig(spec=spec, split="dev500", out=out, batch=batch, limit=episodes, overwrite=True,
                    env_kwargs={"max_steps": 4})
    t0 = time.perf_counter()
    eps = execute(cfg, progress=False)
    return time.perf_counter() - t0, eps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", default="small")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, the same for both modes")
    args = ap.parse_args()
    import os

    os.environ["SAD_EVAL_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_checkpoint(args.size, Path(tmp) / "ckpt")
        timed(ckpt, args.batch, 2, Path(tmp) / "warm.jsonl")  # load + warm-up
        t_seq, seq = timed(ckpt, 1, args.episodes, Path(tmp) / "seq.jsonl")
        t_bat, bat = timed(ckpt, args.batch, args.episodes, Path(tmp) / "bat.jsonl")
    same = {e.task_id: [s.action for s in e.steps] for e in seq} == {e.task_id: [s.action for s in e.steps] for e in bat}
    epm_seq, epm_bat = 60 * len(seq) / t_seq, 60 * len(bat) / t_bat
    print(f"model={args.size} threads={args.threads} episodes={args.episodes} steps/episode=4 max_new_tokens={MAX_NEW}")
    print(f"sequential (batch 1):   {t_seq:7.1f} s  {epm_seq:7.1f} episodes/min")
    print(f"batched (batch {args.batch:>2}):    {t_bat:7.1f} s  {epm_bat:7.1f} episodes/min")
    print(f"ratio batched/sequential: {epm_bat / epm_seq:.2f}x (target >= 6x); identical trajectories: {same}")


if __name__ == "__main__":
    main()
