"""The Python API: `evaluate`, `collect` and `distill`, what the `sad-eval` commands call.

Like ``lm_eval.simple_evaluate`` or ``inspect_ai.eval``, one call runs the whole thing and returns
a result object::

    import sad_eval
    res = sad_eval.evaluate("expert", "alfworld", n=5)
    res.metrics["tsr"], res.to_pandas()

A run writes its trajectories (JSONL + manifest) exactly as the CLI does, so it resumes the same
way: call it again and only the missing episodes are played. ``agent`` is a name (``expert``,
``oracle``, ``smollm2-135m``, ``openai:MODEL``), a checkpoint directory, or any object with
``name`` and ``act(states) -> turns`` (`sad_eval.agents.base.Policy`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sad_eval.distill.api import DistillResult, distill  # noqa: F401 (the API's distill)
from sad_eval.distill.config import validate_train_config  # noqa: F401
from sad_eval.errors import SadEvalError
from sad_eval.settings import RunSettings, check_settings, default_out, run_config, task_list  # noqa: F401
from sad_eval.trajectory import Episode


@dataclass
class EvalResult:
    """The episodes of one run and their metrics (the keys of `sad-eval metrics --format json`)."""

    episodes: list[Episode]
    path: Path | None = None  # the trajectory file (with its manifest beside it)
    teacher: list[Episode] | None = None  # for CoT match
    manifest: dict[str, Any] = field(default_factory=dict)
    new: list[Episode] = field(default_factory=list)  # the episodes this call recorded (not resumed ones)
    _metrics: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, Any]:
        """TSR, ARL, CoT match, latency, env scores; with several envs, the same per env under ``envs``."""
        if self._metrics is None:
            from sad_eval.metrics import summarize
            from sad_eval.reports.tables import metrics_by_env

            overall = summarize(self.episodes, self.teacher)
            per_env = metrics_by_env(self.episodes, self.teacher)
            self._metrics = {**overall, "envs": per_env} if len(per_env) > 1 else overall
        return self._metrics

    def to_pandas(self):
        """One row per episode: identity, outcome, steps, invalid turns, seconds, and the env's scores."""
        import pandas as pd

        rows = []
        for e in self.episodes:
            row = {"env": e.env, "split": e.split, "task_id": e.task_id, "sample": e.sample, "agent": e.agent,
                   "seed": e.seed, "status": e.status, "success": e.success, "score": e.score,
                   "steps": len(e.steps), "invalid_steps": sum(bool(s.invalid) for s in e.steps),
                   "wall_s": e.wall_s, "error": e.error}
            for k in ("em", "f1"):
                if k in e.meta:
                    row[k] = e.meta[k]
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        tsr = self.metrics.get("tsr", math.nan)
        return (f"EvalResult({len(self.episodes)} episodes, TSR {tsr:.1f}%"
                + (f", path={str(self.path)!r}" if self.path else "") + ")")


def _as_policy(agent: Any) -> tuple[str, Any]:
    """(agent string, policy object or None)."""
    if isinstance(agent, Path):
        return str(agent), None
    if isinstance(agent, str):
        return agent, None
    if callable(getattr(agent, "act", None)):
        name = getattr(agent, "name", None) or type(agent).__name__
        return str(name), agent
    raise SadEvalError(f"agent must be a name, a checkpoint path or a Policy (with .act), not {type(agent).__name__}")


def run(settings: RunSettings, policy: Any = None) -> EvalResult:
    """Run (or resume) what ``settings`` says: what `sad-eval eval` / `collect`, `evaluate` / `collect`
    and an experiment's stages call. ``policy``: a ready Policy object, named by ``settings.agent``."""
    from sad_eval.run import execute_run
    from sad_eval.trajectory import load_trajectories

    cfg = run_config(settings, policy)
    outcome = execute_run(cfg, progress=settings.progress)
    wanted = set(outcome.jobs)
    episodes = [e for e in load_trajectories([cfg.out]) if e.key in wanted]
    teach = load_trajectories([settings.teacher]) if settings.teacher else None
    return EvalResult(episodes=episodes, path=cfg.out, teacher=teach, manifest=outcome.manifest, new=outcome.new)


def _run(kind: str, agent: Any, env: str, split: str | None, n: int | None, **options: Any) -> EvalResult:
    name, policy = _as_policy(agent)
    options.setdefault("progress", False)  # the Python API is quiet unless asked
    return run(RunSettings(agent=name, env=env, kind=kind, split=split, n=n, **options), policy)


def evaluate(agent: Any, env: str, split: str | None = None, n: int | None = None, **options: Any) -> EvalResult:
    """Evaluate ``agent`` on ``env`` (`sad-eval eval`): record the trajectories (resumable) and return them.

    Options, as the command's flags: ``tasks`` (list, "a,b" or "@file"), ``seed``, ``batch`` (default
    1 for scripted experts, 8 for models), ``workers``, ``out`` (default ``runs/eval-AGENT-ENV-SPLIT.jsonl``),
    ``shard`` ("i/n"), ``overwrite``, ``teacher`` (a JSONL, for CoT match), ``temperature``, ``top_p``,
    ``max_new_tokens``, ``chat``, ``max_context``, ``max_steps``, ``server_url``, ``base_url`` (default
    ``$OPENAI_BASE_URL``), ``api``, ``tokenizer`` (endpoint agents: counts context tokens), ``threads``
    (torch threads of a local model), ``progress`` (default False): the fields of
    `sad_eval.settings.RunSettings`, which `run` takes whole.
    """
    return _run("eval", agent, env, split, n, **_checked(options, "evaluate"))


def collect(teacher: Any, env: str, split: str = "train", n: int | None = None, samples: int = 1,
            **options: Any) -> EvalResult:
    """Collect teacher trajectories (`sad-eval collect`): ``samples`` per task, the options of `evaluate`;
    default out ``runs/collect-TEACHER-ENV-SPLIT.jsonl``."""
    options = _checked(options, "collect")
    if "teacher" in options:
        raise SadEvalError("collect: the teacher is the first argument")
    return _run("collect", teacher, env, split, n, samples=samples, **options)


# the keywords of `evaluate` / `collect`: RunSettings' fields but those given as arguments
_RUN_OPTIONS = tuple(f.name for f in dataclasses.fields(RunSettings)
                     if f.name not in ("agent", "env", "kind", "split", "n", "samples", "resume"))


def _checked(options: dict[str, Any], fn: str) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_RUN_OPTIONS))
    if unknown:
        raise TypeError(f"{fn}() got unknown options {', '.join(unknown)}; known: {', '.join(_RUN_OPTIONS)}")
    return options
