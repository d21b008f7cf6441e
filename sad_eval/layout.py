"""The layout of an experiment run directory: where each stage writes and the report reads.

    config.yaml                    the config the run was started with
    manifest.json                  every stage with its command line, status and timing
    stages/NAME.json               a finished stage's stamp (hash of its inputs); NAME.partial: started
    teacher/{env}-train.jsonl      teacher trajectories to distill from
    teacher/{env}-eval.jsonl       the teacher on the eval split (Table 3's teacher row, CoT pairing)
    ckpt/{student}-{method}-s{seed}/   distilled students
    eval/{student}-{method}-s{seed}/{env}.jsonl   students on the eval split
    report/                        tables (md/csv/tex), figures (png), masks.html, report.md
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def student_key(student: Any, method: str, seed: int) -> str:
    """One distilled student's name in the run directory; ``student``: its config entry or its name."""
    return f"{getattr(student, 'name', student)}-{method}-s{seed}"


def teacher_file(root: Path, env: str, part: str) -> Path:
    """``part``: "train" (what students learn from) or "eval" (the teacher's own eval run)."""
    return Path(root) / "teacher" / f"{env}-{part}.jsonl"


def ckpt_dir(root: Path, key: str) -> Path:
    return Path(root) / "ckpt" / key


def eval_file(root: Path, key: str, env: str) -> Path:
    return Path(root) / "eval" / key / f"{env}.jsonl"


def stamp_file(root: Path, stage: str) -> Path:
    return Path(root) / "stages" / f"{stage}.json"


def partial_file(root: Path, stage: str) -> Path:
    """Written while a stage runs, holding its inputs' digest: an interrupted stage resumes only
    a run of the same inputs."""
    return Path(root) / "stages" / f"{stage}.partial"


def report_dir(root: Path) -> Path:
    return Path(root) / "report"
