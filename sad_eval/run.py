"""One evaluation or collection run: tasks -> rollouts -> JSONL, with resume, manifest, progress.

The output file is the source of truth: every finished episode is appended and fsynced, and a
rerun skips the (task_id, sample) keys already there, so a run killed at any point resumes with
nothing lost and nothing duplicated. The manifest beside it records what produced the file; a
resume with different settings is refused rather than mixing two runs in one file.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sad_eval.agents.registry import AgentSpec
from sad_eval.errors import SadEvalError, redact_url
from sad_eval.provenance import data_checksum, versions
from sad_eval.statefiles import FileLock, read_json_state, write_json_atomic
from sad_eval.trajectory import Episode, TrajectoryWriter, drop_errored, recorded_keys

MANIFEST_FORMAT = "sad-eval/manifest@1"
# settings that must match for a resume to append to the same file
IDENTITY_KEYS = ("env", "split", "seed", "samples", "agent", "subset", "subset_seed")
# of the agent's config and the env's keywords, the ones that change what an episode is (the
# endpoint's address and the WebShop server's URL say where, not what)
AGENT_IDENTITY = ("decoding", "chat", "max_context", "api", "exemplars", "teacher_topk")
ENV_NOT_IDENTITY = ("server_url",)


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
    retry_errors: bool = True  # on resume, run errored episodes (server down, ...) again
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "eval"  # or "collect"
    subset: str = "stratified"  # how `limit` tasks are chosen (harness.select_tasks)
    subset_seed: int = 0
    policy: Any = None  # a ready Policy object (the Python API's own-policy case); else built from `spec`
    command: str | None = None  # the command line that runs this (an experiment's stage); else sys.argv's


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


def build_manifest(cfg: RunConfig, task_ids: list[str], jobs: int) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "kind": cfg.kind,
        "env": cfg.spec.env,
        "split": cfg.split,
        "seed": cfg.seed,
        "samples": cfg.samples,
        "agent": cfg.spec.agent,
        "agent_config": redact_urls(cfg.spec.describe()),
        "batch": cfg.batch,
        "workers": cfg.workers,
        "shard": list(cfg.shard) if cfg.shard else None,
        "limit": cfg.limit,
        "subset": cfg.subset if cfg.limit else None,
        "subset_seed": cfg.subset_seed if cfg.limit else None,
        "tasks": len(task_ids),
        "jobs": jobs,
        "tasks_sha256": hashlib.sha256("\n".join(task_ids).encode()).hexdigest(),
        "env_kwargs": redact_urls({k: v for k, v in cfg.env_kwargs.items() if "key" not in k.lower()}),
        "versions": versions(),
        "data_sha256sums": data_checksum(),
        "command": redact_url(cfg.command or " ".join(["sad-eval", *sys.argv[1:]]))
        if cfg.command or (sys.argv and "sad" in sys.argv[0]) else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def redact_urls(obj: Any) -> Any:
    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, dict):
        return {k: redact_urls(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_urls(v) for v in obj]
    return obj


def identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """The settings a resume must share with the run that wrote the file."""
    agent = manifest.get("agent_config") or {}
    env_kwargs = manifest.get("env_kwargs") or {}
    out = {k: manifest.get(k) for k in IDENTITY_KEYS}
    out.update({k: agent.get(k) for k in AGENT_IDENTITY})
    out.update({k: v for k, v in env_kwargs.items() if k not in ENV_NOT_IDENTITY})
    return out


def check_resume(cfg: RunConfig, manifest: dict[str, Any]) -> None:
    """Refuse to append to a file written with other settings, naming each that differs. A file with
    no episodes yet (a run that failed before its first one) holds nothing to mix with: its manifest
    is simply replaced."""
    path = manifest_path(cfg.out)
    if not path.is_file() or not recorded_keys(cfg.out):
        return
    old = read_json_state(path, "run manifest")
    if not isinstance(old, dict):
        raise SadEvalError(f"run manifest {path} is not a JSON object; delete it (or use --overwrite)")
    was, now = identity(old), identity(manifest)
    diff = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
    if diff:
        shown = "; ".join(f"{k}: {_short(was.get(k))} there, {_short(now.get(k))} now" for k in diff)
        raise SadEvalError(f"{cfg.out} was written with other settings ({shown}); "
                           "use the same settings to resume, or --overwrite, or another --out")


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


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
    """Run (or resume) and return the episodes recorded by this invocation.

    On resume, episodes recorded as errored (an env or server failure, not a task failure) are
    dropped from the file and run again unless ``cfg.retry_errors`` is off."""
    return execute_run(cfg, on_episode, progress).new


def _policy_manifest(policy: Any) -> dict[str, Any]:
    """What a built policy adds to the manifest: e.g. the model id an endpoint actually serves."""
    extra = getattr(policy, "manifest_extra", None)
    return dict(extra()) if callable(extra) else {}


def execute_run(cfg: RunConfig, on_episode: Callable[[Episode], None] | None = None,
                progress: bool = True) -> RunOutcome:
    """`execute`, also returning the run's job list and manifest."""
    out = Path(cfg.out)
    # one writer per output file for the whole run: a second one would duplicate episodes
    lock = FileLock(out, "sad-eval run").acquire()
    try:
        return _execute_locked(cfg, out, on_episode, progress)
    finally:
        lock.release()


def _execute_locked(cfg: RunConfig, out: Path, on_episode: Callable[[Episode], None] | None,
                    progress: bool) -> RunOutcome:
    from sad_eval.agents.registry import make_policy
    from sad_eval.envs import make_env
    from sad_eval.harness import plan_jobs, quiet_transformers, rollout, rollout_parallel, rollout_sharded

    env_name = cfg.spec.env
    topk = cfg.spec.top_logprobs
    if topk and not cfg.spec.custom and not cfg.spec.agent_kind.generates:
        raise SadEvalError("--teacher-topk needs a model teacher (a checkpoint or openai:MODEL)")
    if cfg.overwrite:
        out.unlink(missing_ok=True)
        manifest_path(out).unlink(missing_ok=True)
        from sad_eval import topk_collect

        topk_collect.remove(out)
    task_ids = resolve_tasks(env_name, cfg.split, cfg.env_kwargs, cfg.tasks)
    jobs = plan_jobs(task_ids, cfg.samples, cfg.limit, cfg.shard, cfg.subset, cfg.subset_seed)
    manifest = build_manifest(cfg, task_ids, len(jobs))
    manifest["task_ids"] = list(dict.fromkeys(t for t, _ in jobs))  # the tasks this run plays, in order
    check_resume(cfg, manifest)
    if cfg.retry_errors:
        manifest["retried_errors"] = drop_errored(out, jobs)
    done = recorded_keys(out)
    todo = [j for j in jobs if j not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest["resumed_with"] = len(jobs) - len(todo)
    write_json_atomic(manifest_path(out), manifest)

    new: list[Episode] = []
    from rich.markup import escape

    # the description is rich markup: a checkpoint path like `ckpt/[v2]` must show as text
    bar = _Progress(len(jobs), len(jobs) - len(todo), escape(f"{cfg.kind} {cfg.spec.agent} on {env_name}/{cfg.split}"),
                    enabled=progress)
    recorder = None
    with TrajectoryWriter(out) as writer, bar:
        def record(ep: Episode) -> None:
            if recorder is not None:
                recorder.write(ep)  # the shard first: a recorded episode always has its top-k
            writer.write(ep)
            new.append(ep)
            bar.advance(ep)
            if on_episode:
                on_episode(ep)

        if todo:
            if cfg.workers > 1 and cfg.spec.agent_kind.worker_processes:
                rollout_parallel(cfg.spec, env_name, cfg.env_kwargs, cfg.split, todo, cfg.seed, cfg.workers, record)
            elif cfg.workers > 1 and cfg.policy is None and cfg.spec.agent_kind.shard_processes:
                rollout_sharded(cfg.spec, env_name, cfg.env_kwargs, cfg.split, todo, cfg.seed, cfg.batch,
                                cfg.workers, record)
            else:
                if cfg.spec.kind == "hf":
                    quiet_transformers()
                policy = cfg.policy if cfg.policy is not None else make_policy(cfg.spec)
                extra = _policy_manifest(policy)
                if extra:  # (what the endpoint reported is not part of the resume identity)
                    manifest["agent_config"].update({f"served_{k}" if k in AGENT_IDENTITY else k: v
                                                     for k, v in extra.items()})
                    write_json_atomic(manifest_path(out), manifest)
                if topk:
                    from sad_eval.topk_collect import TopKRecorder

                    policy = recorder = TopKRecorder(policy, topk, out, env_name)
                factory = lambda: make_env(env_name, split=cfg.split, **cfg.env_kwargs)  # noqa: E731
                rollout(factory, policy, env_name, cfg.split, todo, cfg.seed, cfg.batch, record)
    _warn_blind_turns(new)
    if topk:
        from sad_eval.topk_collect import merge

        merge(out, topk)  # also after a resume that found nothing left to do
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


def _warn_blind_turns(episodes: list[Episode]) -> None:
    """The context policy keeps the latest observation; say so when a turn's context could not."""
    import warnings

    seen = [s.obs_visible for e in episodes for s in e.steps if s.obs_visible is not None]
    if seen and not all(seen):
        warnings.warn(f"the latest observation did not fit in the context of {seen.count(False)} of {len(seen)} "
                      "turns (raise --max-context)", stacklevel=2)


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
                                 rate=f"{rate:.1f}" if rate < 1000 else f"{rate:.0f}" if rate < 1e5 else ">1e5", err=f"[red]{self.errored} err[/]" if self.errored else "")
