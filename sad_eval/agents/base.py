"""The policy interface: a batch of episode states in, one turn per episode out.

Every agent (scripted expert, local HF checkpoint, OpenAI-compatible endpoint) implements
`Policy.act`. Experts read privileged facts the env put in `state.info` (the expert plan, the
WebShop goal, the HotPotQA supporting facts); they never import env internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

from sad_eval.trajectory import Step


@dataclass
class EpisodeState:
    """What a policy sees of one running episode."""

    env: str
    task_id: str
    task: str  # the first user message: the observation `reset` returned
    steps: list[Step] = field(default_factory=list)  # turns so far, with their observations
    observation: str = ""  # the latest observation (== task before the first turn)
    info: dict[str, Any] = field(default_factory=dict)  # the latest `info` from the env
    sample: int = 0
    memory: dict[str, Any] = field(default_factory=dict)  # per-episode scratch for stateful policies


@dataclass
class Turn:
    """One generated turn."""

    reasoning: str
    action: str
    raw: str = ""  # the text as generated (models); empty for scripted policies
    invalid: bool = False  # no parsable action: `action` is the raw text
    tokens: int | None = None  # generated tokens
    logprobs: list[float] | None = None
    context_tokens: int | None = None  # tokens of the context the model saw (model agents)
    obs_visible: bool | None = None  # the latest observation was in that context
    # when asked (collect --teacher-topk): the generated token ids (in the student tokenizer's
    # vocabulary) and, per token, the teacher's top-N (token id, log-prob at temperature 1)
    token_ids: list[int] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None
    # self-consistent selection (--vote K): how many of the K sampled turns chose each well-formed action
    votes: dict[str, int] | None = None
    error: str | None = None  # this episode cannot go on (e.g. an endpoint refused its request): record it errored


@runtime_checkable
class Policy(Protocol):
    name: str

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        """One turn for each state, in order."""
        ...
