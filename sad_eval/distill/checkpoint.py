"""Trainer checkpoints, switched in whole: a resumed run continues from weights and trainer state
of one and the same step.

A checkpoint (model safetensors, tokenizer, training_args.json, trainer_state.pt with optimizer,
step and RNG, the loss log so far) is written into a sibling staging directory ``.NAME.ckpt-new``
and then put in place by renames: ``NAME`` -> ``.NAME.ckpt-old``, staging -> ``NAME``. A kill at
any moment leaves either the previous complete checkpoint or the new complete one, and
`recover_checkpoint` (run before every resume) finishes or undoes a switch that was cut short.
(The former scheme replaced the model files first and the state last, so a kill in between
resumed "from step 2" on weights already at step 4.)

The trainer state holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``: resuming never unpickles arbitrary objects.
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
from sad_eval.errors import SadEvalError

STATE_FILE = "trainer_state.pt"
LOG_FILE = "loss_log.jsonl"
ARGS_FILE = "training_args.json"


def staging_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.ckpt-new"


def retired_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.ckpt-old"


def rng_state() -> dict:
    """Every RNG the loop draws from, as tensors and plain values (``weights_only``-loadable)."""
    import numpy as np

    key, keys, pos, has_gauss, cached = np.random.get_state()
    st = {"python": random.getstate(), "torch": torch.get_rng_state(),
          "numpy": {"key": key, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    import numpy as np

    random.setstate(_tuples(st["python"]))
    n = st["numpy"]
    if isinstance(n, dict):
        n = (n["key"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    np.random.set_state(n)
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _tuples(x):
    """random.setstate wants the tuple shape that getstate gave (a loader may hand back lists)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def load_state(path: Path) -> dict:
    """A trainer state file, loaded with ``weights_only=True``. States written before this format
    kept numpy's RNG as an array: for those, numpy's array reconstruction (and nothing else) is
    allowed in addition."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    import numpy as np

    allowed = [np.ndarray, np.dtype, type(np.dtype("uint32"))]
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed.append(_reconstruct)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise SadEvalError(f"{path}: trainer state holds objects other than tensors and numbers; "
                           f"refusing to unpickle it ({str(e).splitlines()[0][:120]})") from None


def recover_checkpoint(out: Path) -> None:
    """Finish or undo a checkpoint switch cut short by a kill (see the module docstring)."""
    new, old = staging_dir(out), retired_dir(out)
    if not out.exists():
        if (new / STATE_FILE).is_file():  # killed between the two renames: the new one is complete
            os.replace(new, out)
        elif old.is_dir():
            os.replace(old, out)
    shutil.rmtree(new, ignore_errors=True)  # an unfinished (or never switched-to) staging dir
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(out: Path, model, tokenizer, optimizer, step: int, cfg, d: Dist,
                    extra: dict | None = None, state_extra: dict | None = None) -> None:
    """Write a complete checkpoint into a staging directory, then switch ``out`` to it.
    ``state_extra`` goes into the trainer state (tensors and plain values: LoRA's adapters)."""
    new, old = staging_dir(out), retired_dir(out)
    if d.main:
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()  # the staging dir exists
        torch.save(rng_state(), new / f"rng_rank{d.rank}.pt")
        dist.barrier()  # every rank's RNG is in it
    if d.main:
        model.save_pretrained(new)
        tokenizer.save_pretrained(new)
        args = {**asdict(cfg), "step": step, **(extra or {})}
        (new / ARGS_FILE).write_text(json.dumps(args, indent=2, default=str))
        from sad_eval.models import make_portable

        make_portable(new)  # loads in transformers 4.x too
        if extra and "summary" in extra:
            (new / "README.md").write_text(model_card(cfg, step, extra["summary"]))
        state = {"step": step, "optimizer": optimizer.state_dict(), "rng": rng_state(), "world": d.world,
                 **(state_extra or {})}
        torch.save(state, new / STATE_FILE)
        if out.is_dir():  # what lives beside the checkpoint (the loss log, ...) moves with it
            for f in out.iterdir():
                if f.is_file() and not (new / f.name).exists() and not f.name.startswith("rng_rank"):
                    shutil.copy2(f, new / f.name)
        _fsync_tree(new)
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _fsync_tree(path: Path) -> None:
    """Flush the staged files to disk before they are switched in (a power cut must not leave a
    renamed but empty checkpoint)."""
    for f in path.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


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
    from sad_eval.statefiles import write_text_atomic

    write_text_atomic(path, "".join(l + "\n" for l in keep))


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
        f"seed {cfg.seed}, chat template {'on' if cfg.chat else 'off'}{_lora_note(cfg)} |",
        f"| final train loss | {num(summary.get('loss'))} (REASON {num(summary.get('reason'))}, ACT {num(summary.get('act'))}) |",
        f"| held-out loss | REASON {num(ev.get('reason'))}, ACT {num(ev.get('act'))} |", "",
        "Task success is measured by evaluating it: `sad-eval eval --agent THIS_DIR --env ENV` "
        "(the prompt format is the harness's; see `training_args.json` for every setting).", "",
        f"`{STATE_FILE}` holds the optimizer state for `sad-eval distill --resume` "
        f"(about twice the weights' size); leave it out when sharing the model. `{LOG_FILE}` is the loss log.", "",
    ]
    return "\n".join(lines)


def _lora_note(cfg) -> str:
    if not getattr(cfg, "lora_r", 0):
        return ""
    alpha = cfg.lora_alpha if cfg.lora_alpha is not None else 2 * cfg.lora_r
    return f", LoRA r {cfg.lora_r} alpha {alpha:g} on {','.join(cfg.lora_targets)} (saved merged)"
