"""Training throughput of `sad-eval distill` against Hugging Face `Trainer`, on SmolLM2-135M.

One run, a few minutes on a 2-core CPU. Every configuration runs in its own subprocess (clean peak
memory) on the *same* batches: the windows the distill pipeline builds from the fixture teacher
trajectories, in the order of the trainer's seeded schedule, fed to HF Trainer through a sequential
sampler.

- ``hf``:  HF `Trainer`, plain causal-LM fine-tuning (every token a target, full logits).
- ``lm``:  this trainer, ``--method lm`` (every token a target; the same work as ``hf``).
- ``sad``: this trainer, ``--method sad`` (REASON/ACT targets only: the LM head runs on those rows).

Reported: tokens/s (input tokens, padding excluded, steps after the warmup) per *CPU time*:
tokens / (process CPU seconds / threads), the rate with the threads fully busy, which other load on a
shared CPU does not distort the way it distorts wall time (best and median wall rates alongside);
the ratios to HF, the
SAD mask bookkeeping (collation of masks + span weights) as a share of step time, achieved FLOP/s
(model FLOPs actually executed: 6·P_blocks per token + causal attention 6·L·d·T² per sequence
+ 6·d·V per row through the LM head) against a measured fp32 matmul peak, and peak RSS.

    python benchmarks/bench_distill.py [--steps 4] [--warmup 1] [--rounds 1] [--batch-size 2] [--seq-len 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "distill_teacher.jsonl"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plan(args):
    """The windows and, per step, the rows of each batch (what both trainers will see)."""
    from sad_eval.distill.curriculum import Schedule
    from sad_eval.distill.examples import build_examples
    from sad_eval.models import load_tokenizer
    from sad_eval.trajectory import load_trajectories

    tok = load_tokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        examples, _ = build_examples(load_trajectories([FIXTURE]), tok, seq_len=args.seq_len, reserve=0)
    sched = Schedule([0.0] * len(examples), args.batch_size, "none", seed=0)
    batches = [sched.batch(s) for s in range(args.steps)]
    return tok, examples, batches


def matmul_peak(threads: int, n: int = 2048, reps: int = 12) -> dict:
    """fp32 matmul FLOP/s: the best rep, by wall clock and by CPU time x threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    wall, cpu = 0.0, 0.0
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        a @ b
        wall = max(wall, 2 * n**3 / (time.perf_counter() - t))
        cpu = max(cpu, 2 * n**3 / ((time.process_time() - c) / threads))
    return {"run": "peak", "wall_flops_per_s": wall, "cpu_flops_per_s": cpu}


def flops(model_cfg, seqs: list[int], head_rows: int) -> float:
    """Training FLOPs (forward + backward = 3x forward) actually executed for one batch."""
    d, L, V = model_cfg["hidden_size"], model_cfg["num_hidden_layers"], model_cfg["vocab_size"]
    p_blocks = model_cfg["p_blocks"]
    total = 0.0
    for t in seqs:
        total += 6 * p_blocks * t + 6 * L * d * t * t  # blocks; causal attention (QK^T and AV, half)
    return total + 6 * d * V * head_rows


def run_hf(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from sad_eval.models import resolve_model

    torch.set_num_threads(args.threads)
    tok, examples, batches = plan(args)
    rows = [examples[i].input_ids for b in batches for i in b]
    pad = tok.pad_token_id

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return {"input_ids": rows[i]}

    def collate(items):
        t = max(len(x["input_ids"]) for x in items)
        ids = torch.full((len(items), t), pad, dtype=torch.long)
        labels = torch.full((len(items), t), -100, dtype=torch.long)
        att = torch.zeros((len(items), t), dtype=torch.long)
        for i, x in enumerate(items):
            n = len(x["input_ids"])
            ids[i, :n] = torch.tensor(x["input_ids"])
            labels[i, :n] = ids[i, :n]
            att[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": att}

    times, cpus = [], []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t, self.c = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)
            cpus.append(time.process_time() - self.c)

    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                                  learning_rate=1e-4, warmup_steps=1, lr_scheduler_type="cosine", weight_decay=0.01,
                                  max_grad_norm=1.0, logging_steps=1000, save_strategy="no", report_to="none",
                                  use_cpu=True, dataloader_num_workers=0, train_sampling_strategy="sequential",
                                  disable_tqdm=True, seed=0)
        Trainer(model=model, args=targs, train_dataset=Rows(), data_collator=collate, callbacks=[Timer()]).train()
    tokens = [sum(len(examples[i].input_ids) for i in b) for b in batches]
    head_rows = [sum(len(examples[i].input_ids) for i in b) for b in batches]  # full logits everywhere
    return _result("hf", args, examples, batches, times, cpus, tokens, head_rows)


def run_ours(args, method: str) -> dict:
    import torch

    from sad_eval.distill import losses, trainer

    torch.set_num_threads(args.threads)
    tok, examples, batches = plan(args)
    book = {"t": 0.0}

    def timed(fn):
        def wrap(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                book["t"] += time.perf_counter() - t
        return wrap

    trainer.micro_batch = timed(trainer.micro_batch)
    losses.group_loss = timed(losses.group_loss)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = trainer.TrainConfig(data=[str(FIXTURE)], student="smollm2-135m", out=tmp, method=method,
                                  max_steps=args.steps, lr=1e-4, batch_size=args.batch_size, seq_len=args.seq_len,
                                  reserve=0, eval_every=0, eval_frac=0.0, progress=False, warmup_steps=1,
                                  threads=args.threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = trainer.train(cfg, log=lambda *a: None)
        log = [json.loads(l) for l in (Path(tmp) / "loss_log.jsonl").read_text().splitlines()]
    log = [r for r in log if r["split"] == "train"]
    times = [r["step_s"] for r in log]
    cpus = [r["cpu_s"] for r in log]
    tokens = [r["tokens"] for r in log]
    if method == "lm":
        head_rows = [sum(len(examples[i].input_ids) - 1 for i in b) for b in batches]
    else:
        head_rows = [sum(sum(1 for r, a in zip(examples[i].m_reason, examples[i].m_act) if r or a) for i in b)
                     for b in batches]
    res = _result(method, args, examples, batches, times, cpus, tokens, head_rows)
    res["bookkeeping_share"] = book["t"] / sum(times)
    return res


def _result(name, args, examples, batches, times, cpus, tokens, head_rows) -> dict:
    """Per timed step: wall and CPU seconds, tokens and FLOPs."""
    from transformers import AutoConfig

    from sad_eval.models import resolve_model

    c = AutoConfig.from_pretrained(resolve_model("smollm2-135m"))
    n_params = 134515008  # SmolLM2-135M, tied embeddings counted once
    mc = {"hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers, "vocab_size": c.vocab_size,
          "p_blocks": n_params - c.vocab_size * c.hidden_size}
    w = args.warmup
    fl = [flops(mc, [len(examples[i].input_ids) for i in b], h) for b, h in zip(batches, head_rows)]
    return {"run": name, "step_s": times[w:], "cpu_s": cpus[w:], "tokens": tokens[w:], "flops": fl[w:],
            "peak_rss_mb": _peak_rss_mb()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=256)
    # 1 thread by default: with other load on the CPU, OpenMP threads spin at barriers while a partner
    # thread is descheduled, which burns CPU time and distorts the per-CPU-time rates
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--rounds", type=int, default=1, help="Interleaved repetitions of hf/lm/sad.")
    ap.add_argument("--one", choices=["hf", "lm", "sad", "peak"], help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    args = ap.parse_args()
    if args.one:
        res = {"hf": lambda: run_hf(args), "lm": lambda: run_ours(args, "lm"), "sad": lambda: run_ours(args, "sad"),
               "peak": lambda: matmul_peak(args.threads)}[args.one]()
        print("RESULT " + json.dumps(res))
        return
    from statistics import median

    runs: dict[str, list[dict]] = {}
    base = [sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size",
            str(args.batch_size), "--seq-len", str(args.seq_len), "--threads", str(args.threads)]
    order = ["hf", "lm", "sad"]
    plan_runs = ["peak"] + [n for r in range(args.rounds) for n in (order if r % 2 == 0 else order[::-1])]
    for name in plan_runs:
        t = time.perf_counter()
        out = subprocess.run(base + ["--one", name], capture_output=True, text=True, cwd=REPO)
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if out.returncode != 0 or not line:
            sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
        runs.setdefault(name, []).append(json.loads(line[0][len("RESULT "):]))
        print(f"{name}: done in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    th = args.threads
    peak = {k: max(r[k] for r in runs["peak"]) for k in ("wall_flops_per_s", "cpu_flops_per_s")}
    res = {"peak": peak, "config": {k: v for k, v in vars(args).items() if k != "json"}}
    for name in order:
        rs = runs[name]
        steps = [(n, f, w, c) for r in rs for n, f, w, c in zip(r["tokens"], r["flops"], r["step_s"], r["cpu_s"])]
        cpu_s = sum(c for *_, c in steps) / th  # seconds of `threads` fully busy cores
        res[name] = {
            "cpu_tokens_per_s": sum(n for n, *_ in steps) / cpu_s,
            "cpu_flops_per_s": sum(f for _, f, *_ in steps) / cpu_s,
            "best_wall_tokens_per_s": max(n / w for n, _, w, _ in steps),
            "median_wall_tokens_per_s": median(n / w for n, _, w, _ in steps),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
        }
        if "bookkeeping_share" in rs[0]:
            res[name]["bookkeeping_share"] = median(r["bookkeeping_share"] for r in rs)
    print(f"SmolLM2-135M fp32, batch {args.batch_size} x seq-len {args.seq_len}, {th} threads, "
          f"{args.rounds} round(s) x {args.steps - args.warmup} timed steps (after {args.warmup} warmup)")
    print(f"fp32 matmul peak: {peak['cpu_flops_per_s'] / 1e9:.1f} GFLOP/s per CPU time "
          f"(best wall rep {peak['wall_flops_per_s'] / 1e9:.1f})")
    print("tok/s and GFLOP/s per CPU time (tokens / (process CPU seconds / threads)): fair on a shared CPU")
    print(f"{'run':<5} {'tok/s':>8} {'GFLOP/s':>8} {'of peak':>8} {'best wall tok/s':>16} {'median wall':>12} {'peak RSS MB':>12}")
    for name in order:
        r = res[name]
        print(f"{name:<5} {r['cpu_tokens_per_s']:>8.1f} {r['cpu_flops_per_s'] / 1e9:>8.1f} "
              f"{r['cpu_flops_per_s'] / peak['cpu_flops_per_s']:>8.1%} {r['best_wall_tokens_per_s']:>16.1f} "
              f"{r['median_wall_tokens_per_s']:>12.1f} {r['peak_rss_mb']:>12.0f}")
    hf = res["hf"]["cpu_tokens_per_s"]
    res["ratio_lm_hf"] = res["lm"]["cpu_tokens_per_s"] / hf
    res["ratio_sad_hf"] = res["sad"]["cpu_tokens_per_s"] / hf
    res["sad_vs_lm"] = res["sad"]["cpu_tokens_per_s"] / res["lm"]["cpu_tokens_per_s"] - 1
    print(f"ratio lm/hf (same work): {res['ratio_lm_hf']:.2f}   ratio sad/hf: {res['ratio_sad_hf']:.2f}")
    print(f"sad vs lm (no masks) tokens/s: {res['sad_vs_lm']:+.1%}; mask bookkeeping in sad steps: "
          f"{res['sad']['bookkeeping_share']:.2%} of wall time (lm: {res['lm']['bookkeeping_share']:.2%})")
    if args.json:
        args.json.write_text(json.dumps({"summary": res, "runs": runs}, indent=2, default=str))


if __name__ == "__main__":
    main()
