"""`sad_eval.distill(...)` / `sad-eval distill`: one validated way into training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sad_eval.distill.config import TrainConfig, validate_train_config


@dataclass
class DistillResult:
    path: Path  # the student checkpoint directory (loads with AutoModelForCausalLM)
    summary: dict[str, Any]  # steps, final losses, throughput, data statistics

    def __repr__(self) -> str:
        return f"DistillResult(path={str(self.path)!r}, steps={self.summary.get('steps')})"


def run_training(cfg: TrainConfig, log=None) -> DistillResult:
    """Validate ``cfg`` and train (what the command, the Python API and an experiment stage call)."""
    from sad_eval.distill.trainer import train

    validate_train_config(cfg)
    summary = train(cfg, log=log or (lambda m: None))
    return DistillResult(Path(cfg.out), summary)


def distill(data: str | Path | Sequence[str | Path], student: str, out: str | Path, method: str = "sad",
            log=None, **options: Any) -> DistillResult:
    """Distill teacher trajectories into ``student`` (`sad-eval distill`); options are `TrainConfig`'s
    fields (``max_steps``, ``lr``, ``seq_len``, ``loss``, ``lambda_reason``, ...)."""
    data = [data] if isinstance(data, (str, Path)) else list(data)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"distill() got unknown options {', '.join(unknown)}")
    cfg = TrainConfig(data=[str(p) for p in data], student=str(student), out=str(out), method=method, **options)
    return run_training(cfg, log)
