"""One evaluation or collection run: tasks -> rollouts -> JSONL, with resume, manifest, progress.

The output file is the source of truth: every finished episode is appended and fsynced, and a
rerun skips the (task_id, sample) keys already there, so a run killed at any point resumes with
nothing lost and nothing duplicated. The manifest beside it records what produced the file; a
resume with different settings is refused rather than mixing two runs in one file.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sad_eval.agents.registry import AgentSpec
from sad_eval.errors import SadEvalError
from sad_eval.trajectory import Episode, TrajectoryWriter, recorded_keys

MANIFEST_FORMAT = "sad-eval/manifest@1"
# settings that must match for a resume to append to the same file
IDENTITY_KEYS = ("env", "split", "seed", "samples", "agent")


@dataclass
class RunConfig:
    spec: AgentSpec
    split: str
    out: Path
    seed: int = 0
    batch: int = 1
    workers: int = 1
    limit: int | None = None
    tasks: list[str] | None = None
    shard: tuple[int, int] | None = None
    samples: int = 1
    overwrite: bool = False
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "eval"  # or "collect"
    policy: Any = None  # a ready Policy object (the Python API's own-policy case); else built from `spec`


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SadEvalError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise SadEvalError(f"--shard {text}: need 0 <= i < n")
    return i, n


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".manifest.json")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("sad-eval", "torch", "transformers", "gymnasium", "textworld", "alfworld", "bm25s"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _data_checksum() -> str | None:
    from sad_eval.paths import data_root

    sums = data_root() / "SHA256SUMS"
    return hashlib.sha256(sums.read_bytes()).hexdigest() if sums.is_file() else None


def build_manifest(cfg: RunConfig, task_ids: list[str], jobs: int) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "kind": cfg.kind,
        "env": cfg.spec.env,
        "split": cfg.split,
        "seed": cfg.seed,
        "samples": cfg.samples,
        "agent": cfg.spec.agent,
        "agent_config": cfg.spec.describe(),
        "batch": cfg.batch,
        "workers": cfg.workers,
        "shard": list(cfg.shard) if cfg.shard else None,
        "tasks": len(task_ids),
        "jobs": jobs,
        "tasks_sha256": hashlib.sha256("\n".join(task_ids).encode()).hexdigest(),
        "env_kwargs": {k: v for k, v in cfg.env_kwargs.items() if "key" not in k.lower()},
        "versions": _versions(),
        "data_sha256sums": _data_checksum(),
        "command": " ".join(["sad-eval", *sys.argv[1:]]) if sys.argv and "sad" in sys.argv[0] else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def check_resume(cfg: RunConfig, manifest: dict[str, Any]) -> None:
    """Refuse to append to a file written with other settings. A file with no episodes yet (a run
    that failed before its first one) holds nothing to mix with: its manifest is simply replaced."""
    path = manifest_path(cfg.out)
    if not path.is_file() or not recorded_keys(cfg.out):
        return
    old = json.loads(path.read_text())
    diff = [k for k in IDENTITY_KEYS if old.get(k) != manifest.get(k)]
    if old.get("agent_config", {}).get("decoding") != manifest["agent_config"].get("decoding"):
        diff.append("decoding")
    if diff:
        raise SadEvalError(f"{cfg.out} was written with different {', '.join(diff)}; "
                           "use --overwrite or another --out")


def resolve_tasks(env_name: str, split: str, env_kwargs: dict, wanted: list[str] | None) -> list[str]:
    from sad_eval.envs import make_env

    env = make_env(env_name, split=split, **env_kwargs)
    try:
        ids = list(env.unwrapped.task_ids)
    finally:
        env.close()
    if wanted:
        unknown = [t for t in wanted if t not in set(ids)]
        if unknown:
            raise SadEvalError(f"unknown task ids for {env_name}/{split}: {', '.join(unknown[:5])}")
        return list(wanted)
    return ids


@dataclass
class RunOutcome:
    jobs: list[tuple[str, int]]  # every (task_id, sample) of the run, recorded before or now
    new: list[Episode]  # the episodes this invocation recorded
    manifest: dict[str, Any]


def execute(cfg: RunConfig, on_episode: Callable[[Episode], None] | None = None,
            progress: bool = True) -> list[Episode]:
    """Run (or resume) and return the episodes recorded by this invocation."""
    return execute_run(cfg, on_episode, progress).new


def _quiet_transformers() -> None:
    """transformers' own "Loading weights" bars would interleave with our progress bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _policy_manifest(policy: Any) -> dict[str, Any]:
    """What a built policy adds to the manifest: e.g. the model id an endpoint actually serves."""
    extra = getattr(policy, "manifest_extra", None)
    return dict(extra()) if callable(extra) else {}


def execute_run(cfg: RunConfig, on_episode: Callable[[Episode], None] | None = None,
                progress: bool = True) -> RunOutcome:
    """`execute`, also returning the run's job list and manifest."""
    from sad_eval.agents.registry import make_policy
    from sad_eval.envs import make_env
    from sad_eval.harness import plan_jobs, rollout, rollout_parallel

    env_name = cfg.spec.env
    out = Path(cfg.out)
    if cfg.overwrite:
        out.unlink(missing_ok=True)
        manifest_path(out).unlink(missing_ok=True)
    task_ids = resolve_tasks(env_name, cfg.split, cfg.env_kwargs, cfg.tasks)
    jobs = plan_jobs(task_ids, cfg.samples, cfg.limit, cfg.shard)
    manifest = build_manifest(cfg, task_ids, len(jobs))
    check_resume(cfg, manifest)
    done = recorded_keys(out)
    todo = [j for j in jobs if j not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest["resumed_with"] = len(jobs) - len(todo)
    manifest_path(out).write_text(json.dumps(manifest, indent=2))

    new: list[Episode] = []
    bar = _Progress(len(jobs), len(jobs) - len(todo), f"{cfg.kind} {cfg.spec.agent} on {env_name}/{cfg.split}",
                    enabled=progress)
    with TrajectoryWriter(out) as writer, bar:
        def record(ep: Episode) -> None:
            writer.write(ep)
            new.append(ep)
            bar.advance(ep)
            if on_episode:
                on_episode(ep)

        if todo:
            if cfg.workers > 1 and cfg.spec.kind == "scripted":
                rollout_parallel(cfg.spec, env_name, cfg.env_kwargs, cfg.split, todo, cfg.seed, cfg.workers, record)
            else:
                if cfg.spec.kind == "hf":
                    _quiet_transformers()
                policy = cfg.policy if cfg.policy is not None else make_policy(cfg.spec)
                extra = _policy_manifest(policy)
                if extra:
                    manifest["agent_config"].update(extra)
                    manifest_path(out).write_text(json.dumps(manifest, indent=2))
                factory = lambda: make_env(env_name, split=cfg.split, **cfg.env_kwargs)  # noqa: E731
                rollout(factory, policy, env_name, cfg.split, todo, cfg.seed, cfg.batch, record)
    return RunOutcome(jobs=jobs, new=new, manifest=manifest)


def progress_columns(width: int, description_len: int) -> list:
    """Progress columns that fit ``width``: counts, live TSR, rate and ETA always; the bar and the
    full description only when there is room (at 80 columns rich would cut "TSR 0.… 8.5 ep/…")."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    stats = [MofNCompleteColumn(), TextColumn("TSR {task.fields[tsr]}"), TextColumn("{task.fields[rate]} ep/min"),
             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[err]}")]
    fixed = 11 + 10 + 13 + 7 + 3 + 7 + len(stats) + 2  # widest "1000/1000", "TSR 100.0%", "12.3 ep/min", times, gaps
    room = width - fixed
    desc = TextColumn("{task.description}")
    if room >= description_len + 12:
        return [desc, BarColumn(bar_width=min(30, room - description_len - 1)), *stats]
    return [desc, *stats]


class _Progress:
    """A rich progress bar with live TSR, episodes/min and ETA (silent when disabled); it fits the
    terminal instead of being cut."""

    def __init__(self, total: int, completed: int, description: str, enabled: bool = True, console=None):
        self.enabled, self.total, self.completed = enabled, total, completed
        self.successes = self.finished = self.errored = 0
        self.t0 = time.perf_counter()
        if enabled:
            from rich.console import Console
            from rich.progress import Progress

            console = console or Console(stderr=True)
            width = console.width
            room = width - 55
            if len(description) > room:  # keep the end: agent and env/split matter most
                description = "…" + description[-max(8, room - 1):]
            self.progress = Progress(*progress_columns(width, len(description)), console=console, transient=False)
            self.task = self.progress.add_task(description, total=total, completed=completed,
                                               tsr="–", rate="–", err="")

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def advance(self, ep: Episode) -> None:
        self.finished += 1
        if ep.status == "error":
            self.errored += 1
        else:
            self.successes += bool(ep.success)
        if self.enabled:
            ok = self.finished - self.errored
            rate = 60.0 * self.finished / max(1e-9, time.perf_counter() - self.t0)
            self.progress.update(self.task, advance=1, tsr=f"{100.0 * self.successes / ok:.1f}%" if ok else "–",
                                 rate=f"{rate:.1f}", err=f"[red]{self.errored} err[/]" if self.errored else "")
