"""Rollout engines compared in one run: sequential, batched (one `generate` per turn), and batched with
prefix (KV) reuse across turns; episodes/min and prefilled positions per generated token.

Per env (ALFWorld with a 20-step cap, WebShop, HotPotQA) and model (the random-weight `small`
student, whose outputs never parse so every episode runs to the step cap, and SmolLM2-135M-Instruct):
  sequential      batch 1, whole context prefilled every turn (the old engine, batch 1)
  batched         batch B, whole context prefilled every turn (the old engine)
  batched+reuse   batch B, each episode's KV cache kept across turns (the default now)
  served          batch B through `sad-eval serve model` on loopback (OpenAI chat API, B concurrent
                  requests merged by the server, which keeps the conversations' KV caches)
Targets (issue 17): batched+reuse >= 3x batched on ALFWorld, >= 1.5x on WebShop and HotPotQA,
>= 10x sequential on ALFWorld at batch 16; prefilled per generated <= 2 on ALFWorld. Greedy
trajectories must be identical in all three modes.
Usage: python benchmarks/bench_harness.py [--models small,smollm2-135m] [--envs alfworld,webshop,hotpotqa]
                                          [--episodes 16] [--seq-episodes 4] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from sad_eval.agents.hf import DecodingConfig, HFPolicy
from sad_eval.envs import get_spec, make_env
from sad_eval.harness import plan_jobs, rollout
from sad_eval.run import resolve_tasks

MAX_NEW = 64  # a ReAct turn (reasoning + action) is typically 30-60 tokens
STEPS = {"alfworld": 20, "webshop": 10, "hotpotqa": 7}


def build_checkpoint(size: str, where: Path) -> str:
    if size == "smollm2-135m":
        return size
    from sad_eval.distill.students import build_student
    from transformers import AutoTokenizer

    model, tok_path = build_student(size, seed=0)
    model.save_pretrained(where)
    AutoTokenizer.from_pretrained(tok_path).save_pretrained(where)
    return str(where)


def timed(policy, env: str, tasks: list[str], batch: int, gen=None) -> tuple[float, list, dict]:
    """Roll out ``tasks``; ``gen`` is the generator whose reuse counters to read (default the policy's)."""
    gen = gen or policy.gen
    split = get_spec(env).default_split
    kw = {"max_steps": STEPS[env]}
    gen.reuse_stats.__init__()
    eps: list = []
    t0 = time.perf_counter()
    rollout(lambda: make_env(env, split=split, **kw), policy, env, split, plan_jobs(tasks), batch=batch,
            on_episode=eps.append)
    return time.perf_counter() - t0, sorted(eps, key=lambda e: e.task_id), gen.reuse_stats.as_dict()


def warm_env_caches(env: str, tasks: list[str]) -> None:
    """Reset every task once before any mode is timed, so that no mode pays for caches that the
    modes timed before it filled (ALFWorld keeps each game's PDDL translation on disk)."""
    e = make_env(env, split=get_spec(env).default_split, max_steps=STEPS[env])
    try:
        for t in tasks:
            e.reset(options={"task_id": t})
    finally:
        e.close()


def serve_loopback(ckpt: str, batch: int, threads: int):
    """`sad-eval serve model` for ``ckpt`` in a thread on a free loopback port: (base url, close)."""
    import threading

    from waitress import create_server

    from sad_eval.agents.serve_model import build

    app, server = build(ckpt, name="bench", max_batch=batch, threads=threads)
    httpd = create_server(app, host="127.0.0.1", port=0, threads=max(4, 2 * batch))
    threading.Thread(target=httpd.run, daemon=True).start()

    def close() -> None:
        httpd.close()
        server.close()

    return f"http://127.0.0.1:{httpd.effective_port}/v1", server.batcher.gen, close


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="small,smollm2-135m")
    ap.add_argument("--envs", default="alfworld,webshop,hotpotqa")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--seq-episodes", type=int, default=4, help="episodes for the (slow) sequential loop")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-context", type=int, default=2048)
    ap.add_argument("--modes", default="sequential,batched,batched+reuse,served")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.models.split(","):
            ckpt = build_checkpoint(size, Path(tmp) / size)
            plain = HFPolicy(ckpt, decoding=DecodingConfig(max_new_tokens=MAX_NEW), prefix_cache=False,
                             max_context=args.max_context, threads=args.threads)
            reuse = HFPolicy(ckpt, decoding=DecodingConfig(max_new_tokens=MAX_NEW), prefix_cache=True,
                             max_context=args.max_context, threads=args.threads)
            for env in args.envs.split(","):
                tasks = resolve_tasks(env, get_spec(env).default_split, {"max_steps": STEPS[env]}, None)[: args.episodes]
                warm_env_caches(env, tasks)
                timed(reuse, env, tasks[:2], 2)  # warm-up of the model
                res = {}
                modes = args.modes.split(",")
                if "sequential" in modes:
                    res["sequential"] = timed(plain, env, tasks[: args.seq_episodes], 1)
                if "batched" in modes:
                    res["batched"] = timed(plain, env, tasks, args.batch)
                rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                res["batched+reuse"] = timed(reuse, env, tasks, args.batch)
                peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                if "served" in modes:
                    from sad_eval.agents.openai_compat import OpenAIPolicy

                    url, served_gen, close = serve_loopback(ckpt, args.batch, args.threads)
                    try:
                        client = OpenAIPolicy("bench", url, decoding=DecodingConfig(max_new_tokens=MAX_NEW),
                                              concurrency=args.batch, max_context=args.max_context,
                                              tokenizer=reuse.gen.tokenizer, chat=reuse.chat)
                        res["served"] = timed(client, env, tasks, args.batch, gen=served_gen)
                    finally:
                        close()
                traj = {m: {e.task_id: [s.action for s in e.steps] for e in eps} for m, (_, eps, _) in res.items()}
                ref = traj["batched+reuse"]
                same = all(all(ref[t] == other[t] for t in other) for other in traj.values())
                epm = {m: 60 * len(eps) / t for m, (t, eps, _) in res.items()}
                for m, (t, eps, st) in res.items():
                    turns = sum(len(e.steps) for e in eps)
                    rows.append(dict(model=size, env=env, mode=m, episodes=len(eps), turns=turns, seconds=round(t, 1),
                                     episodes_per_min=round(epm[m], 2),
                                     prefilled_per_generated=round(st["prefilled"] / max(1, st["generated"]), 2),
                                     reused_share=round(st["reused"] / max(1, st["prompt_tokens"]), 3)))
                    r = rows[-1]
                    print(f"{size:>13} {env:>8} {m:>14}: {r['episodes']:3d} ep {turns:4d} turns {t:8.1f} s "
                          f"{r['episodes_per_min']:7.2f} ep/min  prefilled/generated {r['prefilled_per_generated']:6.2f}",
                          flush=True)
                ratio = {f"reuse_over_{m}": epm["batched+reuse"] / epm[m] for m in epm if m != "batched+reuse"}
                print(f"{size:>13} {env:>8}  " + "  ".join(f"{k} {v:.2f}x" for k, v in ratio.items())
                      + f"  identical: {same}  peak RSS {peak_mb:.0f} MB (was {rss0 / 1024:.0f} MB before the reuse run)",
                      flush=True)
                rows.append(dict(model=size, env=env, mode="ratio", **ratio, identical=same, peak_rss_mb=round(peak_mb)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
