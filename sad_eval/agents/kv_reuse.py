"""Prefix (KV) reuse across turns: batched decoding that prefills only what a cache lacks.

Each running episode (or, in `serve model`, each recent conversation) keeps the keys and values of
every token the model already processed. A new prompt is tokenized whole; the tokens up to the
longest common prefix with the cached ids are taken from the cache, the rest is prefilled. The
result is the computation `model.generate` does on the whole prompt, regrouped: greedy outputs
match it (tests/test_prefix_cache.py), at a fraction of the prefill.

Batch layout, per row: ``[padding | cached prefix | fed tokens | generated ...]``, all padding at
the far left, as in ordinary left-padded generation (no holes in the attention mask, so no row
ever attends to nothing). Every row feeds the same number of tokens S = the largest uncached
suffix; a row with a shorter suffix re-feeds the last tokens of its prefix instead of padding
(the same compute as padding, and the mask stays simple).

transformers' own continuous batching (`generate_batch`, paged cache with block sharing) was
measured first and not used: see docs/agents.md.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Hashable, Sequence


@dataclass
class CachedPrefix:
    ids: list[int]  # the tokens whose keys/values are held
    layers: list[tuple]  # per layer (keys [H, L, D], values [H, L, D])


@dataclass
class ReuseStats:
    """Physical work: positions prefilled (padding and re-fed tokens included) vs generated."""

    prefilled: int = 0  # positions computed in prefill forwards (batch x width)
    prompt_tokens: int = 0  # real prompt tokens asked for
    reused: int = 0  # prompt tokens taken from a cache
    generated: int = 0  # decode positions computed (one per row per step)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class KVStore:
    """Cached prefixes by key (an episode), at most ``capacity`` (least recently used go first)."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self.entries: OrderedDict[Hashable, CachedPrefix] = OrderedDict()

    def get(self, key: Hashable) -> CachedPrefix | None:
        e = self.entries.get(key)
        if e is not None:
            self.entries.move_to_end(key)
        return e

    def put(self, key: Hashable, entry: CachedPrefix) -> None:
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

    def keep_only(self, keys: set) -> None:
        """Free the caches of episodes that are no longer running."""
        for k in [k for k in self.entries if k not in keys]:
            del self.entries[k]

    def longest_match(self, ids: Sequence[int]) -> Hashable | None:
        """The key whose cached ids share the longest prefix with ``ids`` (serve model: no episode ids)."""
        best, best_n = None, 0
        for k, e in self.entries.items():
            n = common_prefix(e.ids, ids)
            if n > best_n:
                best, best_n = k, n
        return best

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for e in self.entries.values() for kv in e.layers for t in kv)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _cache_kwarg(model) -> str:
    """transformers 5.x renamed `past_key_values` to `cache` (the old name is deprecated)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@dataclass
class _Row:
    prompt: list[int]
    reuse: int  # prompt tokens taken from the cache
    gen: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    done: bool = False


def decode_with_reuse(model, prompts: Sequence[list[int]], cached: Sequence[CachedPrefix | None], *,
                      max_new_tokens: int, eos_ids: Sequence[int], is_done, temperature: float = 0.0,
                      top_p: float = 1.0, seed: int = 0, logprobs: bool = False, top_logprobs: int = 0,
                      pad_id: int = 0, stats: ReuseStats | None = None):
    """Generate for each prompt (token ids), reusing ``cached[i]`` where it is a prefix.

    ``is_done(i, gen_ids, last_token) -> bool`` is the per-row stop rule (checked after each new
    token). Returns (rows, new caches): each row's generated ids (+ log-probs), and for each row the
    cache of everything it processed (prompt + generated tokens but the last).
    """
    import torch
    from transformers import DynamicCache

    stats = stats if stats is not None else ReuseStats()
    device = next(model.parameters()).device
    B = len(prompts)
    rows = []
    for p, c in zip(prompts, cached):
        n = common_prefix(c.ids, p) if c is not None else 0
        rows.append(_Row(list(p), min(n, len(p) - 1)))  # at least one token is fed, for its logits
    S = max(len(r.prompt) - r.reuse for r in rows)
    # a row with a shorter suffix re-feeds prompt tokens instead of padding; a prompt shorter than S
    # is left-padded and uses no cache
    for r in rows:
        r.reuse = max(0, min(r.reuse, len(r.prompt) - S))
    R = max(r.reuse for r in rows)
    stats.prefilled += B * S
    stats.prompt_tokens += sum(len(r.prompt) for r in rows)
    stats.reused += sum(r.reuse for r in rows)

    n_layers = model.config.get_text_config().num_hidden_layers
    cache = DynamicCache()
    # the whole run fits in R + S + max_new_tokens positions: allocate them once instead of letting
    # DynamicCache grow by torch.cat every step (cat was 43% of a decode step, profiled)
    cache.layers = [_preallocated_class()(R + S + max_new_tokens) for _ in range(n_layers)]
    ref = next((c for c in cached if c is not None and c.layers), None)
    if R > 0:
        h, d = ref.layers[0][0].shape[0], ref.layers[0][0].shape[2]
        dtype = ref.layers[0][0].dtype
        for layer in range(n_layers):
            slot = cache.layers[layer]
            slot.allocate(B, h, d, dtype, device)
            for b, (r, c) in enumerate(zip(rows, cached)):
                if r.reuse:
                    ck, cv = c.layers[layer]
                    slot.kbuf[b, :, R - r.reuse:R] = ck[:, :r.reuse]
                    slot.vbuf[b, :, R - r.reuse:R] = cv[:, :r.reuse]
            slot.advance(R)
    ids = torch.full((B, S), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros(B, R + S, dtype=torch.long, device=device)
    pos = torch.ones(B, S, dtype=torch.long, device=device)
    for b, r in enumerate(rows):
        fed = r.prompt[r.reuse:]
        ids[b, S - len(fed):] = torch.tensor(fed, dtype=torch.long)
        mask[b, R - r.reuse:R] = 1  # its cached prefix ...
        mask[b, R + S - len(fed):] = 1  # ... and the tokens it feeds (a short prompt is left-padded)
        pos[b, S - len(fed):] = torch.arange(r.reuse, r.reuse + len(fed))
    next_pos = torch.tensor([len(r.prompt) for r in rows], device=device)

    kw = _cache_kwarg(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    live = list(range(B))  # batch position -> row index
    new_caches: list[CachedPrefix | None] = [None] * B

    def harvest(batch_pos: list[int]) -> None:
        """Copy the finished rows' real positions out of the batched cache."""
        for bp in batch_pos:
            i = live[bp]
            r = rows[i]
            n = len(r.prompt) + len(r.gen) - 1  # the last token was sampled, never fed
            layers = [(layer.keys[bp, :, -n:].clone(), layer.values[bp, :, -n:].clone()) for layer in cache.layers]
            new_caches[i] = CachedPrefix(r.prompt + r.gen[:-1], layers)

    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                    **{kw: cache})
        for step in range(max_new_tokens):
            logits = out.logits[:, -1, :].float()
            tokens = _choose(logits, temperature, top_p, gen)
            if logprobs or top_logprobs:
                lp = torch.log_softmax(logits, -1)
            finished = []
            for bp, i in enumerate(live):
                r, t = rows[i], int(tokens[bp])
                r.gen.append(t)
                if logprobs:
                    r.logprobs.append(float(lp[bp, t]))
                if top_logprobs:
                    v, ix = torch.topk(lp[bp], top_logprobs)
                    r.top.append(list(zip(ix.tolist(), v.tolist())))
                if t in eos_ids or is_done(i, r.gen, t) or len(r.gen) >= max_new_tokens:
                    r.done = True
                    finished.append(bp)
            stats.generated += len(live)
            if finished:
                harvest(finished)
                gone = set(finished)
                keep = [bp for bp in range(len(live)) if bp not in gone]
                if not keep:
                    break
                idx = torch.tensor(keep, device=device)
                cache.batch_select_indices(idx)
                mask, tokens, next_pos = mask[idx], tokens[idx], next_pos[idx]
                live = [live[bp] for bp in keep]
            mask = torch.cat([mask, torch.ones(len(live), 1, dtype=mask.dtype, device=device)], 1)
            out = model(input_ids=tokens.view(-1, 1), attention_mask=mask, position_ids=next_pos.view(-1, 1),
                        use_cache=True, logits_to_keep=1, **{kw: cache})
            next_pos = next_pos + 1
    return rows, new_caches


@functools.cache
def _preallocated_class():
    # built on first use: transformers is imported only when a model decodes
    from transformers.cache_utils import DynamicLayer

    return type("PreallocatedLayer", (_Preallocated, DynamicLayer), {})


class _Preallocated:
    """A cache layer with its capacity allocated up front; ``keys``/``values`` are views of the filled part.

    Mixed into transformers' `DynamicLayer` (5.x), so every other cache method still exists.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.n = capacity, 0

    def allocate(self, batch: int, heads: int, dim: int, dtype, device) -> None:
        import torch

        self.kbuf = torch.zeros(batch, heads, self.capacity, dim, dtype=dtype, device=device)
        self.vbuf = torch.zeros_like(self.kbuf)
        self.device, self.is_initialized = device, True

    def advance(self, s: int) -> None:
        self.n += s
        self.keys, self.values = self.kbuf[:, :, :self.n], self.vbuf[:, :, :self.n]

    def lazy_initialization(self, key_states, value_states) -> None:
        b, h, _, d = key_states.shape
        self.allocate(b, h, d, key_states.dtype, key_states.device)

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        s = key_states.shape[-2]
        self.kbuf[:, :, self.n:self.n + s] = key_states
        self.vbuf[:, :, self.n:self.n + s] = value_states
        self.advance(s)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.n

    def batch_select_indices(self, indices) -> None:
        self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
        self.advance(0)


def _choose(logits, temperature: float, top_p: float, gen):
    """Greedy at temperature 0; else temperature + nucleus (top-p) sampling."""
    import torch

    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, -1)
    if top_p < 1.0:
        sp, si = probs.sort(-1, descending=True)
        drop = sp.cumsum(-1) - sp > top_p  # keep the smallest set whose mass reaches top_p
        sp = sp.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs.cpu(), 1, generator=gen).view(-1).to(logits.device)
