"""Training methods: which target tokens are supervised and how the losses over them are averaged.

Every method is a list of groups (name, mask over target tokens, weight); the loss is
Σ_g weight_g · mean_{t ∈ g} ℓ_t (see `losses.group_loss`). Masks are 0/1 over *target tokens*
(token t is a target predicted by the logits at t-1).

- ``sad``         [REASON, λr] + [ACT, λa]: each span averaged on its own (the paper's eq. 12/13).
- ``no-seg``      [REASON ∪ ACT, 1]: the same tokens, one flat mean (no span structure).
- ``reason-only`` [REASON, λr];  ``action-only`` [ACT, λa].
- ``token``       [TRAJ, 1]: a flat mean over every trajectory token after the system prompt
                  (task, observations, template tokens and turns; each token a target once across
                  windows; see examples.py), MiniLLM-style token-level KD baseline.
- ``random-span`` [R', λr] + [A', λa] where R', A' have exactly as many tokens as REASON/ACT and
                  the same run lengths (one run per span), placed at random non-overlapping
                  positions among the TRAJ tokens (seeded per example): it keeps the loss shape of
                  ``sad`` but forgets where the spans are.
- ``lm``          [ALL, 1]: every token of the sequence (system prompt included) is a target, i.e.
                  plain causal-LM fine-tuning with no masks (the reference of the benchmark).
"""

from __future__ import annotations

import random
from typing import Sequence

METHODS = ("sad", "token", "no-seg", "reason-only", "action-only", "random-span", "lm")


def runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of 1s as (start, length)."""
    out, start = [], None
    for i, v in enumerate(list(mask) + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i - start))
            start = None
    return out


def random_span_masks(m_reason: Sequence[int], m_act: Sequence[int], m_traj: Sequence[int],
                      rng: random.Random) -> tuple[list[int], list[int]]:
    """REASON/ACT masks with the true masks' run lengths, laid out at random among TRAJ positions.

    The runs (one per contiguous REASON or ACT stretch) are shuffled and separated by random gaps
    (a uniform composition of the free TRAJ positions), so counts and run lengths are preserved
    exactly and the two masks never overlap.
    """
    eligible = [i for i, v in enumerate(m_traj) if v]
    pieces = [("R", n) for _, n in runs(m_reason)] + [("A", n) for _, n in runs(m_act)]
    used = sum(n for _, n in pieces)
    if used > len(eligible):
        raise ValueError("REASON/ACT tokens outside the trajectory mask")
    rng.shuffle(pieces)
    free = len(eligible) - used
    slots = free + len(pieces)
    piece_slots = set(rng.sample(range(slots), len(pieces)))
    r, a = [0] * len(m_reason), [0] * len(m_act)
    pos, k = 0, 0
    for s in range(slots):
        if s in piece_slots:
            kind, n = pieces[k]
            k += 1
            for e in eligible[pos:pos + n]:
                (r if kind == "R" else a)[e] = 1
            pos += n
        else:
            pos += 1
    return r, a


def _all_but_first(like):
    """Every position but the first (nothing predicts token 0)."""
    if isinstance(like, list):
        return [0] + [1] * (len(like) - 1) if like else []
    out = like.new_ones(like.shape)
    out[..., 0] = 0
    return out


def method_masks(method: str, m_reason, m_act, m_traj, rand: tuple | None = None):
    """[(group name, mask, which λ)] for a method; ``rand`` = random-span (r, a) masks.

    Works on lists or tensors (masks are combined with max, so no dtype assumptions)."""
    if method == "sad":
        return [("reason", m_reason, "r"), ("act", m_act, "a")]
    if method == "no-seg":
        both = [max(x, y) for x, y in zip(m_reason, m_act)] if isinstance(m_reason, list) else (m_reason + m_act).clamp(max=1)
        return [("reason+act", both, 1)]
    if method == "reason-only":
        return [("reason", m_reason, "r")]
    if method == "action-only":
        return [("act", m_act, "a")]
    if method == "token":
        return [("traj", m_traj, 1)]
    if method == "lm":
        return [("all", _all_but_first(m_traj), 1)]
    if method == "random-span":
        if rand is None:
            raise ValueError("random-span needs its random masks")
        return [("reason", rand[0], "r"), ("act", rand[1], "a")]
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def groups_for(method: str, m_reason, m_act, m_traj, lambda_reason: float = 1.0, lambda_act: float = 1.0,
               rand: tuple | None = None):
    """`losses.group_loss` groups: (name, mask, weight)."""
    lam = {"r": lambda_reason, "a": lambda_act}
    return [(n, m, lam.get(w, w)) for n, m, w in method_masks(method, m_reason, m_act, m_traj, rand)]
