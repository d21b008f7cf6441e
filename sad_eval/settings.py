"""`RunSettings`: every setting of one `eval` or `collect` run, and the one source of those commands'
options (sad_eval/options.py), of the Python API's keywords (`sad_eval.evaluate(..., **options)`)
and of an experiment's collect and eval stages. `run_config` checks them and resolves them into
what the harness runs (`run.RunConfig`): the agent's kind and the env keywords it needs, from the
agent registry (sad_eval/agents/registry.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sad_eval.errors import SadEvalError
from sad_eval.options import check_bounds, flag, path_or_none

EVAL, COLLECT = "eval", "collect"
DECODING_PANEL = "Decoding (model agents)"
BATCH_HELP = "Episodes stepped in lockstep, one generate per turn (default 1 for scripted experts, 8 for models)."
RESUME_HELP = "Resume the output file (the default; the explicit form): only missing episodes are played."
MAX_CONTEXT_HELP = ("Context tokens; the oldest observations are elided to fit (default: the student's training "
                    "seq-len; for openai:MODEL the server's advertised length).")
TOKENIZER_HELP = ("openai:MODEL: the served model's tokenizer (name or path): counts the context tokens (default: "
                  "a safe estimate) and, with --teacher-topk, maps the endpoint's tokens to ids (default smollm2-135m).")
RETRY_HELP = "On resume, keep errored episodes (server down, ...) instead of running them again."
EXEMPLARS_HELP = ("Few-shot exemplars in the system prompt: K (teacher episodes from train; per task type for "
                  "ALFWorld), react or react:KEY (ReAct's prompts), 0 = none. Default: a student's training prompt.")
VOTE_HELP = ("Self-consistent action selection (HF checkpoints): sample K turns per step, act on the most "
             "frequent well-formed action (Kang et al. 2025). 1 = off.")
SUBSET_HELP = "How -n picks tasks: stratified (seeded, balanced by task type) | first (id order)."
BASE_URL_ENV = "OPENAI_BASE_URL"  # the endpoint of openai:MODEL when --base-url is not given
THREADS_ENV = "SAD_EVAL_THREADS"  # HF agents' torch threads when --threads is not given


def _agent_help() -> str:
    from sad_eval.agents.registry import agent_help

    return agent_help()


def _env_help() -> str:
    from sad_eval.envs.spec import env_choices

    return env_choices()


def _split_help() -> str:
    from sad_eval.envs.spec import default_splits_help

    return f"Default: {default_splits_help()} (collect: train)."


def _tasks_text(value: Any) -> str:
    return value if isinstance(value, str) else ",".join(map(str, value))


@dataclass
class RunSettings:
    """What `sad-eval eval` / `sad-eval collect` run; ``kind`` says which (it is the command)."""

    agent: str = flag(name="--agent", required=True, help=_agent_help, per_command={COLLECT: {"name": "--teacher"}})
    env: str = flag(name="--env", required=True, help=_env_help)
    kind: str = EVAL  # eval | collect
    split: str | None = flag(None, "--split", _split_help,
                             per_command={COLLECT: {"help": "Task split to collect on (default train)."}})
    samples: int = flag(1, "--samples", "Samples per task (use with --temperature).", commands=(COLLECT,),
                        at_least=1)
    n: int | None = flag(None, "-n", "N tasks of the split (see --subset).", at_least=1,
                         hint="; leave it out to run the whole split")
    tasks: str | None = flag(None, "--tasks", "Task ids: a,b,c or @file.", to_cli=_tasks_text)
    seed: int = flag(0, "--seed", "Env and sampling seed.",
                     per_command={COLLECT: {"help": "Env and sampling seed (sample k uses seed + k)."}})
    batch: int | None = flag(None, "--batch", BATCH_HELP, at_least=1)
    workers: int = flag(1, "--workers", "Processes: scripted experts share the jobs; a local model runs one copy "
                        "per process on every N-th job (use with --threads 1 on a small CPU).", at_least=1)
    out: Path | None = flag(None, "--out", "Output JSONL (default runs/KIND-AGENT-ENV-SPLIT.jsonl).")
    shard: str | None = flag(None, "--shard", "Run shard i/n of the task list.")
    overwrite: bool = flag(False, "--overwrite", "Start over instead of resuming.")
    resume: bool = flag(False, "--resume", RESUME_HELP)
    # eval: the teacher's trajectories, for CoT match (collect's --teacher is the agent)
    teacher: Path | None = flag(None, "--teacher", "Teacher JSONL: adds CoT match to the table.", commands=(EVAL,))
    temperature: float = flag(0.0, "--temperature", "0 = greedy.", panel=DECODING_PANEL)
    top_p: float = flag(1.0, "--top-p", "Nucleus sampling mass (with --temperature > 0).", panel=DECODING_PANEL)
    max_new_tokens: int = flag(128, "--max-new-tokens", "Token budget per generated turn.", panel=DECODING_PANEL,
                               at_least=1)
    chat: bool = flag(True, "--chat", "Use the tokenizer's chat template.", off="--no-chat", panel=DECODING_PANEL)
    max_context: int | None = flag(None, "--max-context", MAX_CONTEXT_HELP, panel=DECODING_PANEL, at_least=1)
    tokenizer: str | None = flag(None, "--tokenizer", TOKENIZER_HELP, panel=DECODING_PANEL)
    max_steps: int | None = flag(None, "--max-steps", "Env step cap (default per env).", at_least=1)
    server_url: str | None = flag(None, "--server-url", "WebShop server (default: start one).")
    base_url: str | None = flag(None, "--base-url", f"OpenAI-compatible endpoint for openai:MODEL (default "
                                                    f"${BASE_URL_ENV}).")
    api: str = flag("chat", "--api", "chat | completions (openai:MODEL).")
    subset: str = flag("stratified", "--subset", SUBSET_HELP)
    subset_seed: int = flag(0, "--subset-seed", "Seed of the stratified subset.")
    prefix_cache: bool = flag(True, "--prefix-cache", "Reuse each episode's KV cache across turns (HF agents; same "
                              "outputs).", off="--no-prefix-cache", panel=DECODING_PANEL)
    exemplars: str | None = flag(None, "--exemplars", EXEMPLARS_HELP, panel=DECODING_PANEL)
    vote: int = flag(1, "--vote", VOTE_HELP, panel=DECODING_PANEL, at_least=1)
    vote_temperature: float = flag(0.7, "--vote-temperature", "Sampling temperature of --vote's K turns.",
                                   panel=DECODING_PANEL)
    retry_errors: bool = flag(True, "--no-retry-errors", RETRY_HELP, invert=True)
    teacher_topk: int = flag(0, "--teacher-topk", "Also write the teacher's top-K log-probs per generated token: "
                             "OUT.topk.safetensors, for distill --loss kl.", commands=(COLLECT,))
    topk_tokenizer: str | None = None  # the Python API's older name of `tokenizer` for top-k
    # speed only (not part of a run's identity): torch CPU threads of an HF agent
    threads: int | None = flag(None, "--threads", f"torch CPU threads of a model agent (default ${THREADS_ENV}, "
                               "else torch's own).", at_least=1, panel=DECODING_PANEL)
    progress: bool = flag(True, "--no-progress", "No progress bar.", invert=True)

    def __post_init__(self) -> None:
        self.out = path_or_none(self.out)
        self.teacher = path_or_none(self.teacher)
        if isinstance(self.exemplars, int) and not isinstance(self.exemplars, bool):
            self.exemplars = str(self.exemplars)

    @property
    def resolved_split(self) -> str:
        from sad_eval.envs import get_spec

        return self.split or ("train" if self.kind == COLLECT else get_spec(self.env).default_split)


def check_settings(s: RunSettings, base_url: str | None) -> None:
    """Values that would run something other than what was asked (``-n 0`` used to run the whole
    split, ``-n -1`` all but one task) are refused with one line: the fields' bounds, and these."""
    check_bounds(s)
    if not s.temperature >= 0:
        raise SadEvalError(f"--temperature must be >= 0 (0 = greedy), got {s.temperature}")
    if not 0 < s.top_p <= 1:
        raise SadEvalError(f"--top-p must be in (0, 1], got {s.top_p}")
    if s.vote > 1 and not s.vote_temperature > 0:
        raise SadEvalError(f"--vote-temperature must be > 0 (K greedy turns would all agree), got {s.vote_temperature}")
    if s.teacher_topk < 0:
        raise SadEvalError("--teacher-topk must be >= 1 (0: none)")
    if base_url:
        from sad_eval.agents.openai_compat import normalize_base_url

        try:
            normalize_base_url(base_url)
        except ValueError:  # urlsplit's own complaints ("Invalid IPv6 URL" for `x[/v1]`)
            raise SadEvalError(f"bad --base-url {base_url!r}: expected http(s)://HOST[:PORT][/v1]") from None


def default_out(agent: str, env: str, split: str, kind: str = EVAL) -> Path:
    from sad_eval.agents.registry import OPENAI_PREFIX

    name = Path(agent.replace(OPENAI_PREFIX, "openai-").rstrip("/")).name or "agent"
    return Path("runs") / f"{kind}-{name}-{env}-{split}.jsonl"


def task_list(tasks: Any) -> list[str] | None:
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


def run_config(s: RunSettings, policy: Any = None):
    """Check ``s`` and resolve it into the harness's `RunConfig` (``policy``: a ready Policy object of
    the Python API, named by ``s.agent``)."""
    from sad_eval.agents.hf import DecodingConfig
    from sad_eval.agents.registry import MODEL_BATCH, AgentSpec, agent_kind
    from sad_eval.envs import env_specs, get_spec
    from sad_eval.harness import SUBSETS
    from sad_eval.run import RunConfig, parse_shard

    if s.resume and s.overwrite:
        raise SadEvalError("--resume and --overwrite contradict each other: pick one")
    env_spec = get_spec(s.env)  # unknown env -> one clear error
    split = s.resolved_split
    kind = agent_kind(s.agent)
    base_url = s.base_url
    if kind.endpoint and policy is None:
        base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        if not base_url:
            raise SadEvalError(f"--agent openai:MODEL needs --base-url (e.g. http://127.0.0.1:8000/v1) "
                               f"or ${BASE_URL_ENV}")
    check_settings(s, base_url)
    batch = s.batch
    if batch is None:
        batch = kind.batch if policy is None else MODEL_BATCH
    if s.subset not in SUBSETS:
        raise SadEvalError(f"--subset must be one of {', '.join(SUBSETS)}, got {s.subset!r}")
    if s.topk_tokenizer and s.tokenizer and s.topk_tokenizer != s.tokenizer:
        raise SadEvalError("--tokenizer and --topk-tokenizer name different tokenizers: the endpoint has one")
    env_kwargs: dict[str, Any] = {}
    if s.max_steps:
        env_kwargs["max_steps"] = s.max_steps
    if s.server_url:
        if not env_spec.server_url:
            servers = [e.name for e in env_specs() if e.server_url]
            raise SadEvalError(f"--server-url applies to --env {' | '.join(servers)} only")
        env_kwargs["server_url"] = s.server_url
    if policy is None:
        env_kwargs.update(kind.env_kwargs(s.env))
    exemplars = s.exemplars
    if exemplars is not None:
        from sad_eval.agents.exemplars import parse_spec

        if policy is None and not kind.generates:
            raise SadEvalError("--exemplars applies to model agents (a checkpoint or openai:MODEL), not scripted ones")
        exemplars = parse_spec(exemplars)
    if s.vote > 1 and (policy is not None or kind.name != "hf"):
        raise SadEvalError("--vote applies to HF checkpoints (a checkpoint dir or a built-in model) only")
    if s.workers > 1 and policy is None and not (kind.worker_processes or kind.shard_processes):
        raise SadEvalError(f"--workers applies to scripted experts and local models; {kind.name} agents "
                           "run in this process (an endpoint takes --batch concurrent requests instead)")
    if s.workers > 1 and s.teacher_topk:
        raise SadEvalError("--workers and --teacher-topk do not combine: the top-k sidecar is written by one process")
    if s.vote > 1 and s.teacher_topk:
        raise SadEvalError("--vote and --teacher-topk do not combine: a teacher's distributions are of one turn")
    spec = AgentSpec(agent=s.agent, env=s.env, chat=s.chat, base_url=base_url, api=s.api, max_context=s.max_context,
                     tokenizer=s.tokenizer or s.topk_tokenizer, custom=policy is not None,
                     prefix_cache=s.prefix_cache, exemplars=exemplars, top_logprobs=s.teacher_topk,
                     threads=s.threads, vote=s.vote, vote_temperature=s.vote_temperature,
                     decoding=DecodingConfig(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                             top_p=s.top_p, seed=s.seed))
    out = s.out or default_out(s.agent, s.env, split, s.kind)
    return RunConfig(spec=spec, split=split, out=out, seed=s.seed, batch=batch, workers=s.workers, limit=s.n,
                     tasks=task_list(s.tasks), shard=parse_shard(s.shard), samples=s.samples,
                     overwrite=s.overwrite, env_kwargs=env_kwargs, kind=s.kind, policy=policy, subset=s.subset,
                     subset_seed=s.subset_seed, retry_errors=s.retry_errors)
