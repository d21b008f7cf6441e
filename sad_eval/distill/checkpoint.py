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
