"""Cached teacher top-k log-probs: a safetensors sidecar next to the teacher trajectories.

Format ``sad-eval/topk@1`` (docs/distill.md), file ``TEACHER.topk.safetensors`` beside
``TEACHER.jsonl``. Metadata (all strings): ``format``, ``k``, ``vocab_size``, ``temperature``
(always "1.0": raw log-softmax), optional ``tokenizer``, and the context the log-probs were computed
under (`CONTEXT_KEYS`: ``seq_len``, ``chat``, ``reserve``, ``chat_template`` (a digest),
``exemplars`` (JSON {env: digest})): the trainer refuses a sidecar whose context differs from its
own, since a log-prob under another context (other elisions, another system prompt) is another
distribution. For each episode
``E = f"{task_id}#{sample}"`` and each assistant turn ``t`` (0-based step index) three tensors:

    E/t/ids            int32   [n]     the turn's content tokens: format_turn(env, reasoning, action)
                                        tokenized in its context (for SmolLM2's template identical to
                                        tokenizer(content, add_special_tokens=False))
    E/t/topk_ids       int32   [n, k]  the teacher's k most likely tokens at the position whose next
                                        token is ids[i] (teacher forcing on ids), most likely first
    E/t/topk_logprobs  float16 [n, k]  their log-softmax values at temperature 1 (float32 allowed)

The trainer matches each target turn by (E, t) and checks that ``ids`` equals its own tokens for
that turn; a turn whose tokens differ (another tokenizer, another rendering) is dropped from the
KL targets and counted. The tail mass 1 − Σ exp(topk_logprobs) is one "other" bucket
(`losses.topk_kl_per_token`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from sad_eval.errors import SadEvalError

FORMAT = "sad-eval/topk@1"


def sidecar_path(data: str | Path) -> Path:
    p = Path(data)
    return p.with_name(p.name[: -len(".jsonl")] + ".topk.safetensors") if p.name.endswith(".jsonl") else \
        p.with_name(p.name + ".topk.safetensors")


def turn_key(episode_key: str, turn: int, field: str) -> str:
    return f"{episode_key}/{turn}/{field}"


class TopK:
    """Read access to one or more sidecars."""

    def __init__(self, paths: Sequence[str | Path]):
        from safetensors import safe_open

        self.files, self.k, self.index, self.metas = [], None, {}, []
        for p in paths:
            p = Path(p)
            if not p.is_file():
                raise SadEvalError(f"top-k sidecar not found: {p} (write one with `sad-eval distill-topk`, or pass --teacher)")
            f = safe_open(str(p), framework="pt")
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise SadEvalError(f"{p}: not a {FORMAT} file (format={meta.get('format')!r})")
            k = int(meta["k"])
            if self.k is not None and k != self.k:
                raise SadEvalError(f"{p}: k={k} differs from another sidecar's k={self.k}")
            self.k = k
            self.vocab_size = int(meta.get("vocab_size", 0))
            self.metas.append((p, meta))
            for name in f.keys():
                if name.endswith("/ids"):
                    self.index[name[: -len("/ids")]] = f
            self.files.append(f)

    def check_context(self, expected: dict[str, str]) -> None:
        """Refuse (one line) a sidecar made under another context than ``expected`` (`context_meta`)."""
        for p, meta in self.metas:
            missing = [k for k in CONTEXT_KEYS if k not in meta]
            if missing:
                raise SadEvalError(f"{p}: the top-k sidecar does not record its context ({', '.join(missing)}); "
                                   "rewrite it with `sad-eval distill-topk` or `collect --teacher-topk`")
            diff = [f"{k} {_show(k, meta[k])} (training: {_show(k, expected[k])})"
                    for k in CONTEXT_KEYS if meta[k] != expected[k]]
            if diff:
                raise SadEvalError(f"{p}: the top-k log-probs were computed under another context: "
                                   + "; ".join(diff) + ". Train with the same settings or rewrite the sidecar")

    def get(self, episode_key: str, turn: int):
        """(ids [n], topk_ids [n,k], topk_logprobs [n,k]) or None."""
        base = f"{episode_key}/{turn}"
        f = self.index.get(base)
        if f is None:
            return None
        return (f.get_tensor(base + "/ids"), f.get_tensor(base + "/topk_ids"),
                f.get_tensor(base + "/topk_logprobs"))


CONTEXT_KEYS = ("seq_len", "reserve", "chat", "chat_template", "exemplars")


def context_meta(tokenizer, seq_len: int, chat: bool, reserve: int, exemplars: dict[str, str]) -> dict[str, str]:
    """The sidecar metadata that identifies a prompt context: the token budget and the room left for
    the turn (together they fix which observations are elided), whether and which chat template
    renders it, and the few-shot exemplars per env ({env: `Exemplars.digest()` or ""})."""
    import hashlib
    import json

    template = getattr(tokenizer, "chat_template", None) if chat else None
    chat = bool(chat and template)  # no template: the plain transcript, as the harness falls back to
    digest = hashlib.sha256(str(template).encode()).hexdigest()[:16] if template else ""
    return {"seq_len": str(int(seq_len)), "reserve": str(int(reserve)), "chat": str(chat),
            "chat_template": digest, "exemplars": json.dumps({k: v for k, v in sorted(exemplars.items())})}


def _show(key: str, value: str) -> str:
    return (value or "none") if key in ("chat_template",) else value


def write_sidecar(path: str | Path, entries: dict, k: int, vocab_size: int, **meta) -> Path:
    """``entries``: {(episode_key, turn): (ids, topk_ids, topk_logprobs)} tensors."""
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for (ek, turn), (ids, tids, tlp) in entries.items():
        tensors[turn_key(ek, turn, "ids")] = ids.to(torch.int32).contiguous()
        tensors[turn_key(ek, turn, "topk_ids")] = tids.to(torch.int32).contiguous()
        tensors[turn_key(ek, turn, "topk_logprobs")] = tlp.to(torch.float16).contiguous()
    md = {"format": FORMAT, "k": str(k), "vocab_size": str(vocab_size), "temperature": "1.0",
          **{a: str(b) for a, b in meta.items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=md)
    tmp.replace(path)
    return path


def teacher_topk_entries(examples, teacher, k: int, device="cpu", batch_size: int = 4, log=None) -> dict:
    """Run the teacher over the training windows and collect top-k rows for every target turn."""
    import torch

    from sad_eval.distill.trainer import pad_batch

    entries = {}
    teacher.eval()
    for b0 in range(0, len(examples), batch_size):
        batch = examples[b0:b0 + batch_size]
        ids, _ = pad_batch([e.input_ids for e in batch], pad_id=0)
        with torch.inference_mode():
            logits = teacher(input_ids=ids.to(device), use_cache=False).logits.float()
        for r, ex in enumerate(batch):
            for turn, t0, t1 in ex.turn_tokens:
                if t0 < 1 or t1 <= t0:
                    continue
                lp = torch.log_softmax(logits[r, t0 - 1:t1 - 1], dim=-1)
                top = lp.topk(k, dim=-1)
                entries[(ex.key, turn)] = (torch.tensor(ex.input_ids[t0:t1]), top.indices.cpu(), top.values.cpu())
        if log:
            log(f"top-k: {min(b0 + batch_size, len(examples))}/{len(examples)} sequences")
    return entries
