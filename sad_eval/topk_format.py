"""The top-k sidecar format `sad-eval/topk@1` (docs/distill.md): naming, context metadata, writing.

A data format shared by the layers that write it (`sad-eval collect --teacher-topk`, at collection
time; `sad-eval distill-topk`, afterwards) and the trainer that reads it (`distill/topk.py`), so it
sits beside `trajectory.py`, below both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

FORMAT = "sad-eval/topk@1"
# what fixes the context a turn's log-probs were computed under: the token budget and the room
# left for the turn (which observations are elided), the chat template, the few-shot exemplars
CONTEXT_KEYS = ("seq_len", "reserve", "chat", "chat_template", "exemplars")


def sidecar_path(data: str | Path) -> Path:
    p = Path(data)
    return p.with_name(p.name[: -len(".jsonl")] + ".topk.safetensors") if p.name.endswith(".jsonl") else \
        p.with_name(p.name + ".topk.safetensors")


def turn_key(episode_key: str, turn: int, field: str) -> str:
    return f"{episode_key}/{turn}/{field}"


def context_meta(tokenizer, seq_len: int | None, chat: bool, reserve: int, exemplars: dict[str, str]) -> dict[str, str]:
    """The sidecar metadata that identifies a prompt context. ``seq_len`` None: no budget (the
    whole conversation, as an endpoint is sent it). ``exemplars``: {env: `Exemplars.digest()` or ""}."""
    template = getattr(tokenizer, "chat_template", None) if chat else None
    chat = bool(chat and template)  # no template: the plain transcript, as the harness falls back to
    digest = hashlib.sha256(str(template).encode()).hexdigest()[:16] if template else ""
    return {"seq_len": "none" if seq_len is None else str(int(seq_len)), "reserve": str(int(reserve)),
            "chat": str(chat), "chat_template": digest,
            "exemplars": json.dumps({k: v for k, v in sorted(exemplars.items())})}


def context_digest(messages: Sequence[dict[str, str]]) -> bytes:
    """32 bytes identifying the conversation a turn was generated after (system prompt with its
    exemplars, task, turns, observations or their elision markers)."""
    blob = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).digest()


def write_sidecar(path: str | Path, entries: dict, k: int, vocab_size: int, contexts: dict | None = None,
                  **meta: Any) -> Path:
    """``entries``: {(episode_key, turn): (ids, topk_ids, topk_logprobs)} tensors. ``contexts``:
    {(episode_key, turn): `context_digest`} (collection time: each turn's own context, which the
    trainer compares turn by turn, so the budget need not match globally)."""
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for (ek, turn), (ids, tids, tlp) in entries.items():
        tensors[turn_key(ek, turn, "ids")] = ids.to(torch.int32).contiguous()
        tensors[turn_key(ek, turn, "topk_ids")] = tids.to(torch.int32).contiguous()
        tensors[turn_key(ek, turn, "topk_logprobs")] = tlp.to(torch.float16).contiguous()
    for (ek, turn), digest in (contexts or {}).items():
        tensors[turn_key(ek, turn, "context")] = torch.frombuffer(bytearray(digest), dtype=torch.uint8).clone()
    md = {"format": FORMAT, "k": str(k), "vocab_size": str(vocab_size), "temperature": "1.0",
          **({"per_turn_context": "True"} if contexts else {}), **{a: str(b) for a, b in meta.items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=md)
    tmp.replace(path)
    return path
