"""Turn an `--agent` string into a policy: `expert`/`oracle`, `openai:MODEL`, or a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sad_eval.agents.hf import DecodingConfig

SCRIPTED = ("expert", "oracle")
# default episodes in lockstep: scripted experts gain nothing from it, and a batch of 8 would charge
# each episode the whole batch's turn time in s/ep (measured 48.5 s/ep reported vs 6.5 s real, ALFWorld)
SCRIPTED_BATCH, MODEL_BATCH = 1, 8


def default_batch(agent: str) -> int:
    return SCRIPTED_BATCH if agent in SCRIPTED else MODEL_BATCH


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
    extra: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None  # openai: counts context tokens (default: none; a safe estimate)
    custom: bool = False  # a user's own Policy object (the Python API): not rebuilt from this spec

    @property
    def kind(self) -> str:
        if self.custom:
            return "custom"
        if self.agent in SCRIPTED:
            return "scripted"
        if self.agent.startswith("openai:"):
            return "openai"
        return "hf"

    def describe(self) -> dict[str, Any]:
        d = {"agent": self.agent, "kind": self.kind}
        if self.kind not in ("scripted", "custom"):
            d.update(decoding=self.decoding.as_dict(), chat=self.chat)
        if self.kind == "openai":
            d.update(base_url=self.base_url, api=self.api, max_context=self.max_context,
                     tokenizer=self.tokenizer)  # never the API key
        if self.kind == "hf":
            from sad_eval.models import resolve_model

            d["checkpoint"] = str(resolve_model(self.agent))
            d["max_context"] = self.max_context
        return d


def make_policy(spec: AgentSpec):
    if spec.kind == "custom":
        raise ValueError("a custom policy is passed as an object, not rebuilt from its spec")
    if spec.kind == "scripted":
        from sad_eval.agents.experts import make_expert

        return make_expert(spec.env, **spec.extra)
    if spec.kind == "openai":
        from sad_eval.agents.openai_compat import make_openai_policy

        return make_openai_policy(spec.agent, base_url=spec.base_url, api=spec.api, decoding=spec.decoding,
                                  chat=spec.chat, max_context=spec.max_context, tokenizer=spec.tokenizer)
    from sad_eval.agents.hf import HFPolicy

    return HFPolicy(spec.agent, decoding=spec.decoding, chat=spec.chat, max_context=spec.max_context,
                    logprobs=spec.logprobs)
