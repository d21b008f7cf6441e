"""The episode record, an append-only JSONL writer, and a tolerant streaming reader.

One JSON object per line, one line per finished episode (format ``sad-eval/trajectory@1``,
documented in docs/trajectory-format.md). The writer flushes and fsyncs each episode, so a
killed run loses at most the episode in flight; the reader skips a torn or corrupt line with
a warning instead of crashing, which is exactly what a kill mid-write leaves behind.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from sad_eval.errors import SadEvalError

FORMAT = "sad-eval/trajectory@1"


@dataclass
class Step:
    """One agent turn and the env's answer to it."""

    reasoning: str
    action: str
    observation: str = ""
    reward: float = 0.0
    latency_s: float = 0.0
    invalid: bool = False  # the model output had no parsable action; the raw text was sent
    tokens: int | None = None  # generated tokens for this turn (model agents)
    context_tokens: int | None = None  # tokens of the context the model saw for this turn (model agents)
    obs_visible: bool | None = None  # the latest observation was in that context (model agents)
    raw: str = ""  # the text the model generated this turn, before parsing (empty: scripted / older files)
    # the env could not carry out this (well-formed) action: its typed `info["rejected"]` (envs/base.py);
    # None in files written before it was recorded (metrics then fall back to the old text rule)
    rejected: bool | None = None
    votes: dict[str, int] | None = None  # --vote K: the K sampled turns' actions, counted (None: no vote)


@dataclass
class Episode:
    env: str
    split: str
    task_id: str
    agent: str
    seed: int = 0
    success: bool = False
    score: float = 0.0
    steps: list[Step] = field(default_factory=list)
    prompt: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    sample: int = 0  # index among K samples of the same task (collection)
    status: str = "ok"  # "ok" or "error" (env/server failure: not a task failure)
    error: str | None = None
    wall_s: float = 0.0
    format: str = FORMAT

    @property
    def key(self) -> tuple[str, int]:
        """Identity used for resume: one record per (task_id, sample)."""
        return (self.task_id, self.sample)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for step in d["steps"]:  # written only by a voting agent: other files stay as they were
            if step.get("votes") is None:
                step.pop("votes", None)
        return {"format": d.pop("format"), **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Episode":
        if not isinstance(d, dict):
            raise ValueError("episode record is not a JSON object")
        fmt = d.get("format", FORMAT)
        if not str(fmt).startswith("sad-eval/trajectory@"):
            raise ValueError(f"unknown format {fmt!r}")
        missing = [k for k in ("env", "task_id", "steps") if k not in d]
        if missing:
            raise ValueError(f"missing fields {missing}")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known and k not in ("steps", "format")}
        kwargs.setdefault("split", "")
        kwargs.setdefault("agent", "")
        steps = [Step(**{k: v for k, v in s.items() if k in Step.__dataclass_fields__}) for s in d["steps"]]
        return cls(steps=steps, **kwargs)


class TrajectoryWarning(UserWarning):
    """A line of a trajectory file was skipped (the CLI prints it as one ``warning:`` line)."""


class TrajectoryWriter:
    """Append episodes to a JSONL file, one flushed line each.

    If the file ends in a torn line (a previous run was killed mid-write), a newline is added
    first so the next record starts on a line of its own.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        self._f = open(self.path, "a", encoding="utf-8")
        if needs_newline:
            self._f.write("\n")
            self._f.flush()

    def write(self, episode: Episode | dict[str, Any]) -> None:
        record = episode.to_dict() if isinstance(episode, Episode) else episode
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "TrajectoryWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_trajectories(path: str | Path, strict: bool = False) -> Iterator[Episode]:
    """Stream episodes from a JSONL file.

    A line that is not a valid episode (or not UTF-8) is skipped with a warning naming file and
    line; with ``strict=True`` it raises ``SadEvalError`` instead.
    """
    for _, _, ep in _records(path, strict):
        if ep is not None:
            yield ep


def _records(path: str | Path, strict: bool = False) -> Iterator[tuple[int, bytes, Episode | None]]:
    """(line number, raw line, episode or None for a skipped line) for every non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise SadEvalError(f"trajectory file not found: {path}")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SadEvalError(f"cannot read trajectory file {path}: {e.strerror}") from e
    with f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if strict:
                        raise ValueError(f"not UTF-8 at byte {e.start}") from None
                    line = raw.decode("utf-8", errors="replace")
                    warnings.warn(f"{path}:{n}: invalid UTF-8 replaced by U+FFFD", stacklevel=3)
                yield n, raw, Episode.from_dict(json.loads(line))
            except (ValueError, TypeError) as e:
                if strict:
                    raise SadEvalError(f"{path}:{n}: refused a corrupt or truncated episode line ({e}) "
                                       "(--strict)") from e
                warnings.warn(TrajectoryWarning(f"{path}:{n}: skipped a corrupt or truncated episode line ({e})"),
                              stacklevel=3)
                yield n, raw, None


def dedupe(episodes: Iterable[Episode], source: str | Path = "") -> list[Episode]:
    """One episode per (env, task_id, sample): two writers on one file, or a retried error, can
    leave several. A finished ("ok") record wins over an errored one, otherwise the first; a
    duplicate of a finished record is reported once per file."""
    kept: dict[tuple[str, str, int], int] = {}
    out: list[Episode] = []
    dups = 0
    for ep in episodes:
        k = (ep.env, *ep.key)
        i = kept.get(k)
        if i is None:
            kept[k] = len(out)
            out.append(ep)
            continue
        if out[i].status == "error" and ep.status != "error":
            out[i] = ep  # a retried episode replaces its error record
        elif out[i].status != "error" and ep.status != "error":
            dups += 1
    if dups:
        warnings.warn(f"{source}: {dups} duplicate (task, sample) records (two writers on one file?) "
                      "counted once", stacklevel=3)
    return out


def load_trajectories(paths: Iterable[str | Path], strict: bool = False) -> list[Episode]:
    """All episodes of the files, each (env, task, sample) once per file (see `dedupe`)."""
    return [ep for p in paths for ep in dedupe(read_trajectories(p, strict=strict), p)]


def recorded_keys(path: str | Path, include_errors: bool = True) -> set[tuple[str, int]]:
    """Keys (task_id, sample) already in a file, for resuming without duplicates; with
    ``include_errors=False`` errored episodes (server down, ...) do not count as recorded."""
    path = Path(path)
    if not path.exists():
        return set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {ep.key for ep in read_trajectories(path) if include_errors or ep.status != "error"}


def drop_errored(path: str | Path, keys: Iterable[tuple[str, int]] | None = None) -> int:
    """Rewrite ``path`` without its errored episode records (of ``keys`` only, when given), atomically
    and with every other line kept byte for byte, so that their retry does not leave two records of
    one episode. Returns how many were dropped."""
    from sad_eval.statefiles import write_bytes_atomic

    path = Path(path)
    if not path.is_file():
        return 0
    wanted = None if keys is None else set(keys)
    keep: list[bytes] = []
    dropped = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _, raw, ep in _records(path):
            if ep is not None and ep.status == "error" and (wanted is None or ep.key in wanted):
                dropped += 1
            else:
                keep.append(raw if raw.endswith(b"\n") else raw + b"\n")
    if dropped:
        write_bytes_atomic(path, b"".join(keep))
    return dropped
