"""`sad-eval collect --teacher-topk K`: the teacher's top-k log-probs written while it collects.

The policy (HF checkpoint, or an OpenAI-compatible endpoint asked for ``top_logprobs``) returns,
with each turn, the generated token ids and per token the top-K (id, log-prob at temperature 1):
the scores generation computed anyway, no second pass. `TopKRecorder` wraps the policy, keeps them
per episode with the digest of the conversation the turn was generated after, and writes one shard
per finished episode (``OUT.topk.parts/``, before the episode's line, so a resumed run has a shard
for every recorded episode); `finalize` merges the shards into the sidecar ``OUT.topk.safetensors``
(format `topk_format`, docs/distill.md). The trainer matches each turn by its tokens and its
context digest, so turns whose context the training windows do not reproduce are dropped, not
misused.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, Sequence

from sad_eval.errors import SadEvalError
from sad_eval.topk_format import FORMAT, context_digest, context_meta, sidecar_path, write_sidecar


def parts_dir(out: str | Path) -> Path:
    """``OUT.topk.parts/`` beside ``OUT.jsonl`` (and its ``OUT.topk.safetensors``)."""
    side = sidecar_path(out)
    return side.with_name(side.name[: -len(".safetensors")] + ".parts")


def episode_key(task_id: str, sample: int) -> str:
    return f"{task_id}#{sample}"  # as distill.examples.episode_key


def remove(out: str | Path) -> None:
    """Forget a run's top-k (``--overwrite``)."""
    shutil.rmtree(parts_dir(out), ignore_errors=True)
    sidecar_path(out).unlink(missing_ok=True)


def policy_context(policy, env: str) -> tuple[Any, int, dict[str, str]]:
    """(tokenizer, vocab size, context metadata) of a model policy's prompts."""
    ex = getattr(policy, "exemplars", None)
    digest = {env: ex.digest() if hasattr(ex, "digest") and ex else ""}
    reserve = policy.decoding.max_new_tokens
    if hasattr(policy, "gen"):  # HFPolicy
        tok = policy.gen.tokenizer
        vocab = int(policy.gen.model.get_output_embeddings().weight.shape[0])
        return tok, vocab, context_meta(tok, policy.max_context, policy.chat, reserve, digest)
    tok = policy.student_tokenizer()  # OpenAIPolicy: the student tokenizer ids are mapped to
    # the conversation is fitted to the endpoint's context when known; chat: the server applies its
    # template, taken to be the student tokenizer's (the trainer's token check catches other tokens)
    return tok, len(tok), context_meta(tok, policy.max_context, policy.api == "chat", reserve, digest)


class TopKRecorder:
    """A policy wrapper that keeps each turn's top-k rows and writes them per finished episode."""

    def __init__(self, policy, k: int, out: str | Path, env: str):
        if k < 1:
            raise SadEvalError("--teacher-topk must be at least 1")
        self.policy, self.k, self.out = policy, int(k), Path(out)
        self.name = policy.name
        self.tokenizer, self.vocab_size, self.meta = policy_context(policy, env)
        self.meta = {**self.meta, "tokenizer": str(getattr(self.tokenizer, "name_or_path", "")), "source": "collect"}
        self._pending: dict[tuple[str, int], dict[int, tuple]] = {}
        parts_dir(self.out).mkdir(parents=True, exist_ok=True)

    def act(self, states: Sequence) -> list:
        import torch

        turns = self.policy.act(states)
        for s, t in zip(states, turns):
            if t.top_logprobs is None or t.token_ids is None:
                raise SadEvalError(f"{self.name} returned no top log-probs: --teacher-topk needs a checkpoint "
                                   "or an endpoint that returns them")
            if any(len(row) < self.k for row in t.top_logprobs):
                raise SadEvalError(f"{self.name} returned fewer than {self.k} top log-probs for a token")
            ids = torch.tensor(t.token_ids, dtype=torch.int32)
            tids = torch.tensor([[i for i, _ in row[:self.k]] for row in t.top_logprobs], dtype=torch.int32)
            tlp = torch.tensor([[v for _, v in row[:self.k]] for row in t.top_logprobs], dtype=torch.float32)
            msgs = s.memory.get("messages")
            if msgs is None:
                raise SadEvalError(f"{self.name} does not report its prompt; cannot record top-k contexts")
            self._pending.setdefault((s.task_id, s.sample), {})[len(s.steps)] = (
                ids, tids.reshape(len(ids), self.k), tlp.reshape(len(ids), self.k), context_digest(msgs))
        return turns

    def close(self) -> None:
        close = getattr(self.policy, "close", None)
        if close:
            close()

    def write(self, ep) -> None:
        """Write the episode's shard (call before its trajectory line is written)."""
        rows = self._pending.pop((ep.task_id, ep.sample), {})
        if ep.status != "ok" or not rows:
            return
        ek = episode_key(ep.task_id, ep.sample)
        entries = {(ek, t): (ids, tids, tlp) for t, (ids, tids, tlp, _) in rows.items() if ids.numel()}
        contexts = {(ek, t): c for t, (ids, _, _, c) in rows.items() if ids.numel()}
        name = hashlib.sha1(ek.encode()).hexdigest()[:20] + ".safetensors"
        write_sidecar(parts_dir(self.out) / name, entries, self.k, self.vocab_size, contexts=contexts, **self.meta)

    def finalize(self) -> Path | None:
        return merge(self.out, self.k)


def merge(out: str | Path, k: int | None = None) -> Path | None:
    """Merge the shards of ``out`` into its sidecar."""
    from safetensors import safe_open

    shards = sorted(parts_dir(out).glob("*.safetensors"))
    if not shards:
        return None
    tensors, meta = {}, None
    for p in shards:
        f = safe_open(str(p), framework="pt")
        m = f.metadata() or {}
        if m.get("format") != FORMAT:
            continue
        if meta is None:
            meta = m
        elif {a: b for a, b in m.items()} != meta:
            raise SadEvalError(f"{parts_dir(out)}: shards written with other settings (k, context); "
                               "rerun with --overwrite")
        if k is not None and int(m["k"]) != k:
            raise SadEvalError(f"{parts_dir(out)} holds k={m['k']} rows, not --teacher-topk {k}; "
                               "rerun with --overwrite or another --out")
        for name in f.keys():
            tensors[name] = f.get_tensor(name)
    if meta is None:
        return None
    from safetensors.torch import save_file

    path = sidecar_path(out)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path
