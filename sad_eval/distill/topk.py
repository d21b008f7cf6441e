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

from sad_eval.topk_format import (CONTEXT_KEYS, FORMAT, context_digest, context_meta,  # noqa: F401
                                 sidecar_path, turn_key, write_sidecar)


class TopK:
    """Read access to one or more sidecars."""

    def __init__(self, paths: Sequence[str | Path]):
        from safetensors import safe_open

        self.files, self.k, self.index, self.metas, self._keys = [], None, {}, [], {}
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
            self._keys[id(f)] = set(f.keys())
            for name in f.keys():
                if name.endswith("/ids"):
                    self.index[name[: -len("/ids")]] = f
            self.files.append(f)

    def check_context(self, expected: dict[str, str]) -> None:
        """Refuse (one line) a sidecar made under another context than ``expected`` (`context_meta`)."""
        for p, meta in self.metas:
            # a collection-time sidecar records each turn's own context (checked turn by turn):
            # the budget it was collected under need not be the training one
            keys = CONTEXT_KEYS if meta.get("per_turn_context") != "True" else \
                tuple(k for k in CONTEXT_KEYS if k not in ("seq_len", "reserve"))
            missing = [k for k in keys if k not in meta]
            if missing:
                raise SadEvalError(f"{p}: the top-k sidecar does not record its context ({', '.join(missing)}); "
                                   "rewrite it with `sad-eval distill-topk` or `collect --teacher-topk`")
            want = dict(expected)
            if "exemplars" in keys:  # a sidecar covers its own envs (one per collected file)
                import json

                side, train = json.loads(meta["exemplars"]), json.loads(expected["exemplars"])
                want["exemplars"] = json.dumps({e: train.get(e, "") for e in sorted(side)})
            diff = [f"{k} {_show(k, meta[k])} (training: {_show(k, want[k])})"
                    for k in keys if meta[k] != want[k]]
            if diff:
                raise SadEvalError(f"{p}: the top-k log-probs were computed under another context: "
                                   + "; ".join(diff) + ". Train with the same settings or rewrite the sidecar")

    def context(self, episode_key: str, turn: int) -> bytes | None:
        """The turn's context digest (`topk_format.context_digest`), if the sidecar records one."""
        base = f"{episode_key}/{turn}"
        f = self.index.get(base)
        if f is None or base + "/context" not in self._keys[id(f)]:
            return None
        return bytes(f.get_tensor(base + "/context").tolist())

    def get(self, episode_key: str, turn: int):
        """(ids [n], topk_ids [n,k], topk_logprobs [n,k]) or None."""
        base = f"{episode_key}/{turn}"
        f = self.index.get(base)
        if f is None:
            return None
        return (f.get_tensor(base + "/ids"), f.get_tensor(base + "/topk_ids"),
                f.get_tensor(base + "/topk_logprobs"))


def _show(key: str, value: str) -> str:
    return (value or "none") if key == "chat_template" else value


def teacher_topk_entries(examples, teacher, k: int, device="cpu", batch_size: int = 4, log=None) -> dict:
    """Run the teacher over the training windows and collect top-k rows for every target turn."""
    import torch

    from sad_eval.distill.batching import pad_batch

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
