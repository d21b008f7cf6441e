"""Trainer checkpoints: model + tokenizer + args, then optimizer/step/RNG state written last.

A checkpoint is complete iff ``trainer_state.pt`` exists, so a run killed mid-save resumes from the
previous one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from sad_eval.distill.distributed import Dist

STATE_FILE = "trainer_state.pt"
LOG_FILE = "loss_log.jsonl"
ARGS_FILE = "training_args.json"


def rng_state() -> dict:
    import numpy as np

    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    import numpy as np

    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(out: Path, model, tokenizer, optimizer, step: int, cfg, d: Dist,
                    extra: dict | None = None) -> None:
    """Model (safetensors) + tokenizer + training_args.json into ``out``; optimizer, step and RNG
    into trainer_state.pt, written last, so a checkpoint is complete iff its state file names it."""
    if d.world > 1:
        torch.save(rng_state(), out / f"rng_rank{d.rank}.pt.partial")
    if d.main:
        tmp = out / ".checkpoint.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        args = {**asdict(cfg), "step": step, **(extra or {})}
        (tmp / ARGS_FILE).write_text(json.dumps(args, indent=2, default=str))
        from sad_eval.models import make_portable

        make_portable(tmp)  # loads in transformers 4.x too
        if extra and "summary" in extra:
            (tmp / "README.md").write_text(model_card(cfg, step, extra["summary"]))
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
        tmp.rmdir()
        state = {"step": step, "optimizer": optimizer.state_dict(), "rng": rng_state(), "world": d.world}
        torch.save(state, out / (STATE_FILE + ".partial"))
        os.replace(out / (STATE_FILE + ".partial"), out / STATE_FILE)
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
        os.replace(out / f"rng_rank{d.rank}.pt.partial", out / f"rng_rank{d.rank}.pt")


def truncate_log(path: Path, step: int) -> None:
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            pass
    path.write_text("".join(l + "\n" for l in keep))


def model_card(cfg, step: int, summary: dict) -> str:
    """A short model card: what the student was distilled from, how, and what is known of it."""
    data = summary.get("data") or {}
    ev = summary.get("eval") or {}

    def num(x, fmt="{:.4f}"):
        return "–" if x is None or x != x else fmt.format(x)

    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation",
        "tags: [sad-eval, react, agent-distillation]", "---", "",
        f"# {Path(cfg.out).name}", "",
        "A ReAct agent student distilled with sad-eval (Structured Agent Distillation).", "",
        "| | |", "|---|---|",
        f"| student | `{cfg.student}` ({num(summary.get('params'), '{:,}')} parameters) |",
        f"| teacher data | {', '.join(f'`{d}`' for d in cfg.data)}: {data.get('used', '–')} of {data.get('episodes', '–')} "
        f"episodes used ({data.get('turns', '–')} turns, {data.get('reason_tokens', '–')} REASON + "
        f"{data.get('act_tokens', '–')} ACT target tokens) |",
        f"| method | `{cfg.method}`, loss `{cfg.loss}`, λr {cfg.lambda_reason}, λa {cfg.lambda_act}, "
        f"curriculum `{cfg.curriculum}` |",
        f"| training | {step} steps, batch {cfg.batch_size} × accum {cfg.grad_accum}, lr {cfg.lr}, seq-len {cfg.seq_len}, "
        f"seed {cfg.seed}, chat template {'on' if cfg.chat else 'off'} |",
        f"| final train loss | {num(summary.get('loss'))} (REASON {num(summary.get('reason'))}, ACT {num(summary.get('act'))}) |",
        f"| held-out loss | REASON {num(ev.get('reason'))}, ACT {num(ev.get('act'))} |", "",
        "Task success is measured by evaluating it: `sad-eval eval --agent THIS_DIR --env ENV` "
        "(the prompt format is the harness's; see `training_args.json` for every setting).", "",
        f"`{STATE_FILE}` holds the optimizer state for `sad-eval distill --resume` "
        f"(about twice the weights' size); leave it out when sharing the model. `{LOG_FILE}` is the loss log.", "",
    ]
    return "\n".join(lines)
