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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sad_eval.errors import SadEvalError
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


def default_out(agent: str, env: str, split: str, kind: str = "eval") -> Path:
    name = Path(agent.replace("openai:", "openai-").rstrip("/")).name or "agent"
    return Path("runs") / f"{kind}-{name}-{env}-{split}.jsonl"


def task_list(tasks: str | Sequence[str] | None) -> list[str] | None:
    """A list, ``"a,b,c"`` or ``"@file"`` (one id per line)."""
    if not tasks:
        return None
    if not isinstance(tasks, str):
        return [str(t) for t in tasks]
    if tasks.startswith("@"):
        path = Path(tasks[1:])
        if not path.is_file():
            raise SadEvalError(f"task list file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise SadEvalError(f"task list {path} is not UTF-8 text (byte {e.start}); "
                               "expected one task id per line") from None
        if "\x00" in text:
            raise SadEvalError(f"task list {path} is a binary file; expected one task id per line")
        ids = [line.strip() for line in text.splitlines() if line.strip()]
        if not ids:
            raise SadEvalError(f"task list {path} names no task ids")
        return ids
    ids = [t.strip() for t in tasks.split(",") if t.strip()]
    if not ids:
        raise SadEvalError(f"--tasks {tasks!r} names no task ids")
    return ids




def check_settings(n: int | None, temperature: float, top_p: float, max_new_tokens: int,
                   max_steps: int | None, max_context: int | None, base_url: str | None) -> None:
    """Values that would run something other than what was asked (``-n 0`` used to run the whole
    split, ``-n -1`` all but one task) are refused with one line."""
    if n is not None and n < 1:
        raise SadEvalError(f"-n must be at least 1 (got {n}); leave it out to run the whole split")
    if not temperature >= 0:
        raise SadEvalError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise SadEvalError(f"--top-p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise SadEvalError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if max_steps is not None and max_steps < 1:
        raise SadEvalError(f"--max-steps must be at least 1, got {max_steps}")
    if max_context is not None and max_context < 1:
        raise SadEvalError(f"--max-context must be at least 1, got {max_context}")
    if base_url:
        from sad_eval.agents.openai_compat import normalize_base_url

        try:
            normalize_base_url(base_url)
        except ValueError:  # urlsplit's own complaints ("Invalid IPv6 URL" for `x[/v1]`)
            raise SadEvalError(f"bad --base-url {base_url!r}: expected http(s)://HOST[:PORT][/v1]") from None



def _run(kind: str, agent: Any, env: str, split: str | None, n: int | None, *, tasks=None, seed: int = 0,
         batch: int | None = None, workers: int = 1, out=None, shard: str | None = None, overwrite: bool = False,
         teacher=None, temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 128,
         chat: bool = True, max_context: int | None = None, max_steps: int | None = None,
         server_url: str | None = None, base_url: str | None = None, api: str = "chat",
         tokenizer: str | None = None, samples: int = 1, progress: bool = False, subset: str = "stratified",
         subset_seed: int = 0, prefix_cache: bool = True, exemplars: str | None = None, teacher_topk: int = 0,
         topk_tokenizer: str | None = None, retry_errors: bool = True) -> EvalResult:
    from sad_eval.agents.hf import DecodingConfig
    from sad_eval.agents.registry import MODEL_BATCH, SCRIPTED, AgentSpec, default_batch
    from sad_eval.envs import env_specs, get_spec
    from sad_eval.run import RunConfig, execute_run, parse_shard
    from sad_eval.trajectory import load_trajectories

    name, policy = _as_policy(agent)
    env_spec = get_spec(env)  # unknown env -> one clear error
    split = split or env_spec.default_split
    if name.startswith("openai:") and policy is None and not base_url:
        raise SadEvalError("--agent openai:MODEL needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    if batch is None:
        batch = default_batch(name) if policy is None else MODEL_BATCH
    if batch < 1 or workers < 1 or samples < 1:
        raise SadEvalError("--batch, --workers and --samples must be >= 1")
    from sad_eval.harness import SUBSETS

    if subset not in SUBSETS:
        raise SadEvalError(f"--subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    if teacher_topk < 0:
        raise SadEvalError("--teacher-topk must be >= 1 (0: none)")
    if topk_tokenizer and tokenizer and topk_tokenizer != tokenizer:
        raise SadEvalError("--tokenizer and --topk-tokenizer name different tokenizers: the endpoint has one")
    check_settings(n, temperature, top_p, max_new_tokens, max_steps, max_context, base_url)
    env_kwargs: dict[str, Any] = {}
    if max_steps:
        env_kwargs["max_steps"] = max_steps
    if server_url:
        if not env_spec.server_url:
            servers = [s.name for s in env_specs() if s.server_url]
            raise SadEvalError(f"--server-url applies to --env {' | '.join(servers)} only")
        env_kwargs["server_url"] = server_url
    if name in SCRIPTED and policy is None:
        from sad_eval.agents.experts import expert_env_kwargs

        env_kwargs.update(expert_env_kwargs(env))
    if exemplars is not None:
        from sad_eval.agents.exemplars import parse_spec

        if name in SCRIPTED and policy is None:
            raise SadEvalError("--exemplars applies to model agents (a checkpoint or openai:MODEL), not scripted ones")
        exemplars = parse_spec(exemplars)
    spec = AgentSpec(agent=name, env=env, chat=chat, base_url=base_url, api=api, max_context=max_context,
                     tokenizer=tokenizer or topk_tokenizer, custom=policy is not None, prefix_cache=prefix_cache,
                     exemplars=exemplars, top_logprobs=teacher_topk,
                     decoding=DecodingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                             top_p=top_p, seed=seed))
    out = Path(out) if out else default_out(name, env, split, kind)
    cfg = RunConfig(spec=spec, split=split, out=out, seed=seed, batch=batch, workers=workers, limit=n,
                    tasks=task_list(tasks), shard=parse_shard(shard), samples=samples, overwrite=overwrite,
                    env_kwargs=env_kwargs, kind=kind, policy=policy, subset=subset, subset_seed=subset_seed,
                    retry_errors=retry_errors)
    outcome = execute_run(cfg, progress=progress)
    wanted = set(outcome.jobs)
    episodes = [e for e in load_trajectories([out]) if e.key in wanted]
    teach = load_trajectories([teacher]) if teacher else None
    return EvalResult(episodes=episodes, path=out, teacher=teach, manifest=outcome.manifest, new=outcome.new)


def evaluate(agent: Any, env: str, split: str | None = None, n: int | None = None, **options: Any) -> EvalResult:
    """Evaluate ``agent`` on ``env`` (`sad-eval eval`): record the trajectories (resumable) and return them.

    Options, as the command's flags: ``tasks`` (list, "a,b" or "@file"), ``seed``, ``batch`` (default
    1 for scripted experts, 8 for models), ``workers``, ``out`` (default ``runs/eval-AGENT-ENV-SPLIT.jsonl``),
    ``shard`` ("i/n"), ``overwrite``, ``teacher`` (a JSONL, for CoT match), ``temperature``, ``top_p``,
    ``max_new_tokens``, ``chat``, ``max_context``, ``max_steps``, ``server_url``, ``base_url``, ``api``,
    ``tokenizer`` (endpoint agents: counts context tokens), ``progress`` (default False).
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


_RUN_OPTIONS = ("tasks", "seed", "batch", "workers", "out", "shard", "overwrite", "teacher", "temperature",
                "top_p", "max_new_tokens", "chat", "max_context", "max_steps", "server_url", "base_url", "api",
                "tokenizer", "progress", "subset", "subset_seed", "prefix_cache", "exemplars", "teacher_topk",
                "topk_tokenizer", "retry_errors")


def _checked(options: dict[str, Any], fn: str) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_RUN_OPTIONS))
    if unknown:
        raise TypeError(f"{fn}() got unknown options {', '.join(unknown)}; known: {', '.join(_RUN_OPTIONS)}")
    return options


@dataclass
class DistillResult:
    path: Path  # the student checkpoint directory (loads with AutoModelForCausalLM)
    summary: dict[str, Any]  # steps, final losses, throughput, data statistics

    def __repr__(self) -> str:
        return f"DistillResult(path={str(self.path)!r}, steps={self.summary.get('steps')})"


def distill(data: str | Path | Sequence[str | Path], student: str, out: str | Path, method: str = "sad",
            log=None, **options: Any) -> DistillResult:
    """Distill teacher trajectories into ``student`` (`sad-eval distill`); options are `TrainConfig`'s
    fields (``max_steps``, ``lr``, ``seq_len``, ``loss``, ``lambda_reason``, ...)."""
    import dataclasses

    from sad_eval.distill.trainer import TrainConfig, train

    data = [data] if isinstance(data, (str, Path)) else list(data)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"distill() got unknown options {', '.join(unknown)}")
    cfg = TrainConfig(data=[str(p) for p in data], student=str(student), out=str(out), method=method, **options)
    validate_train_config(cfg)
    summary = train(cfg, log=log or (lambda m: None))
    return DistillResult(Path(out), summary)


def validate_train_config(cfg) -> None:
    from sad_eval.distill.curriculum import CURRICULA
    from sad_eval.distill.methods import METHODS

    if cfg.method not in METHODS:
        raise SadEvalError(f"unknown --method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.loss not in ("ce", "kl"):
        raise SadEvalError(f"unknown --loss {cfg.loss!r}; choose ce or kl")
    if cfg.curriculum not in CURRICULA:
        raise SadEvalError(f"unknown --curriculum {cfg.curriculum!r}; choose one of {', '.join(CURRICULA)}")
    if cfg.loss == "ce" and cfg.teacher:
        raise SadEvalError("--teacher is only used with --loss kl (ce trains on the trajectories' tokens)")
    if cfg.temperature <= 0:
        raise SadEvalError("--temperature must be positive")
    for name in ("max_steps", "batch_size", "grad_accum", "seq_len"):
        if getattr(cfg, name) < 1:
            raise SadEvalError(f"--{name.replace('_', '-')} must be at least 1")
