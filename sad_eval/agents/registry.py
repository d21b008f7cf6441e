"""The agent registry: what an `--agent` string names, and what each kind of agent needs.

Kinds, tried in this order: a scripted teacher by name (`expert`, `oracle`, or the name an env's spec
gives its teacher: each env's own scripted teacher, sad_eval/agents/experts), `openai:MODEL` (an OpenAI-compatible endpoint), and otherwise a
Hugging Face checkpoint: a directory, or a built-in model name (`smollm2-135m`, sad_eval/models.py).
Each kind declares the env keywords it needs (a scripted teacher reads privileged facts the env
exposes only when asked), its default batch, and whether it generates text (decoding, exemplars,
top-k log-probs apply). Every consumer asks `agent_kind`; none compares agent names itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sad_eval.agents.hf import DecodingConfig
from sad_eval.models import SMOLLM2

BUILT_IN_MODELS = (SMOLLM2,)

# default episodes in lockstep: scripted experts gain nothing from it, and a batch of 8 would charge
# each episode the whole batch's turn time in s/ep (measured 48.5 s/ep reported vs 6.5 s real, ALFWorld)
SCRIPTED_BATCH, MODEL_BATCH = 1, 8
OPENAI_PREFIX = "openai:"


def _scripted_env_kwargs(env: str) -> dict[str, Any]:
    from sad_eval.agents.experts import expert_env_kwargs

    return expert_env_kwargs(env)


def _no_env_kwargs(env: str) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class AgentKind:
    name: str  # recorded in run manifests: scripted | openai | hf | custom
    help: str  # how `--agent` spells it
    matches: Callable[[str], bool]
    build: Callable[[Any], Any]  # AgentSpec -> Policy
    env_kwargs: Callable[[str], dict[str, Any]] = _no_env_kwargs  # what the env must be built with
    batch: int = MODEL_BATCH  # default episodes in lockstep
    generates: bool = True  # a model: decoding, chat, exemplars and top-k log-probs apply
    worker_processes: bool = False  # --workers > 1 runs it in separate processes (CPU-bound, picklable)
    shard_processes: bool = False  # --workers > 1 runs one copy per process, each on its share of the jobs
    endpoint: bool = False  # served over HTTP: needs a base URL (--base-url or $OPENAI_BASE_URL)


def agent_kind(agent: str) -> AgentKind:
    return next(k for k in KINDS if k.matches(agent))


def agent_help() -> str:
    """`--agent`'s help: every kind, as the registry knows them."""
    return " | ".join(k.help for k in KINDS)


def agent_env_kwargs(agent: str, env: str) -> dict[str, Any]:
    """Constructor keywords ``env`` needs for ``agent`` (e.g. the privileged facts a scripted teacher reads)."""
    return dict(agent_kind(agent).env_kwargs(env))


def default_batch(agent: str) -> int:
    return agent_kind(agent).batch


@dataclass
class AgentSpec:
    """Everything needed to build a policy again (in a worker process, or on resume)."""

    agent: str
    env: str
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    chat: bool = True
    base_url: str | None = None
    api: str = "chat"
    max_context: int | None = None
    logprobs: bool = False
    prefix_cache: bool = True  # HF agents: reuse each episode's KV cache across turns (same outputs)
    # few-shot exemplars (agents/exemplars.py): "K", "react[:KEY]", "" (none); None = a distilled
    # student's own training prompt (its training_args.json), else none
    exemplars: str | None = None
    # > 0: the policy returns, per generated token, the top-N (id, log-prob) (collect --teacher-topk),
    # endpoint tokens mapped to ``tokenizer``'s ids (the student's; default SmolLM2's)
    top_logprobs: int = 0
    # also, for openai: counts context tokens (default: none; a safe estimate)
    tokenizer: str | None = None
    threads: int | None = None  # HF agents: torch CPU threads (speed only: not in describe())
    vote: int = 1  # HF agents: > 1 = self-consistent selection of K sampled turns (agents/hf.py)
    vote_temperature: float = 0.7
    extra: dict[str, Any] = field(default_factory=dict)
    custom: bool = False  # a user's own Policy object (the Python API): not rebuilt from this spec

    @property
    def agent_kind(self) -> AgentKind:
        return CUSTOM if self.custom else agent_kind(self.agent)

    @property
    def kind(self) -> str:
        return self.agent_kind.name

    def describe(self) -> dict[str, Any]:
        d = {"agent": self.agent, "kind": self.kind}
        if self.agent_kind.generates:
            d.update(decoding=self.decoding.as_dict(), chat=self.chat)
        if self.kind == "openai":
            d.update(base_url=self.base_url, api=self.api, max_context=self.max_context,
                     tokenizer=self.tokenizer)  # never the API key
        if self.kind == "hf":
            from sad_eval.models import resolve_model

            d["checkpoint"] = str(resolve_model(self.agent))
            d["max_context"] = self.max_context
            d["prefix_cache"] = self.prefix_cache  # speed only: outputs are the same
            if self.vote > 1:  # absent otherwise, so that earlier runs' manifests still match
                d.update(vote=self.vote, vote_temperature=self.vote_temperature)
        if self.agent_kind.generates:
            d["exemplars"] = agent_exemplars(self).describe()
        if self.top_logprobs:
            d["teacher_topk"] = self.top_logprobs
        return d


def agent_exemplars(spec: AgentSpec):
    """The exemplars an agent's prompts carry: the spec's, or (None) a distilled student's own."""
    from sad_eval.agents.exemplars import spec_for

    value = spec.exemplars
    if value is None and spec.kind == "hf":
        value = spec_for(student_exemplars(spec.agent), spec.env)
    return _load_cached(spec.env, value or "")


def student_exemplars(checkpoint: str) -> dict[str, str]:
    """{env or "*": spec} a checkpoint was distilled with (`training_args.json`), {} if none."""
    import json

    from sad_eval.agents.exemplars import parse_env_specs
    from sad_eval.models import resolve_model

    try:
        args = resolve_model(checkpoint) / "training_args.json"
    except Exception:
        return {}
    if not args.is_file():
        return {}
    value = json.loads(args.read_text()).get("exemplars")
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v}
    return parse_env_specs(value)


_CACHE: dict[tuple[str, str], Any] = {}


def _load_cached(env: str, value: str):
    from sad_eval.agents.exemplars import load_exemplars

    if (env, value) not in _CACHE:
        _CACHE[(env, value)] = load_exemplars(env, value)
    return _CACHE[(env, value)]


def make_policy(spec: AgentSpec):
    """The policy ``spec`` describes, built by its kind."""
    if spec.custom:
        raise ValueError("a custom policy is passed as an object, not rebuilt from its spec")
    return spec.agent_kind.build(spec)


def _build_scripted(spec: AgentSpec):
    from sad_eval.agents.experts import make_expert

    return make_expert(spec.env, **spec.extra)  # the experts registry, by env


def _build_openai(spec: AgentSpec):
    from sad_eval.agents.openai_compat import make_openai_policy

    return make_openai_policy(spec.agent, base_url=spec.base_url, api=spec.api, decoding=spec.decoding,
                              chat=spec.chat, max_context=spec.max_context, exemplars=agent_exemplars(spec),
                              top_logprobs=spec.top_logprobs, tokenizer=spec.tokenizer)


def _build_hf(spec: AgentSpec):
    from sad_eval.agents.hf import HFPolicy

    return HFPolicy(spec.agent, decoding=spec.decoding, chat=spec.chat, max_context=spec.max_context,
                    logprobs=spec.logprobs, threads=spec.threads, exemplars=agent_exemplars(spec),
                    top_logprobs=spec.top_logprobs, prefix_cache=spec.prefix_cache, vote=spec.vote,
                    vote_temperature=spec.vote_temperature)


def _not_rebuilt(spec: AgentSpec):
    raise ValueError("a custom policy is passed as an object, not rebuilt from its spec")


SCRIPTED_NAMES = ("expert", "oracle")  # either name: the env's own scripted teacher


def _is_scripted(agent: str) -> bool:
    """``expert``, ``oracle``, or the teacher name a registered env's spec declares (`EnvSpec.teacher`)."""
    from sad_eval.envs.spec import env_specs

    return agent in SCRIPTED_NAMES or any(spec.teacher == agent for spec in env_specs())

KINDS: list[AgentKind] = [
    AgentKind("scripted", " | ".join(SCRIPTED_NAMES), _is_scripted, _build_scripted,
              _scripted_env_kwargs, batch=SCRIPTED_BATCH, generates=False, worker_processes=True),
    AgentKind("openai", OPENAI_PREFIX + "MODEL", lambda a: a.startswith(OPENAI_PREFIX), _build_openai, endpoint=True),
    # a built-in model (built into the cache by `sad-eval models pull`) is a checkpoint like any other
    AgentKind("hf", " | ".join(BUILT_IN_MODELS), lambda a: a in BUILT_IN_MODELS, _build_hf, shard_processes=True),
    AgentKind("hf", "checkpoint dir", lambda a: True, _build_hf, shard_processes=True),  # the catch-all: stays last
]
# a user's own Policy object (the Python API): its manifest records no decoding (it is not ours)
CUSTOM = AgentKind("custom", "a Policy object (Python API)", lambda a: False, _not_rebuilt, generates=False)


def register_kind(kind: AgentKind) -> None:
    """Add a kind of agent (tried before the checkpoint catch-all); its ``name`` goes into manifests."""
    KINDS.insert(len(KINDS) - 1, kind)
