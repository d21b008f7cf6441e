"""Distillation losses as small pure functions of tensors.

Per-token functions take logits ``[..., V]`` (already aligned: row t predicts target t) and return
``[...]``; the span reduction (`group_loss`) turns per-token values and masks into the scalar the
trainer minimises. Keeping the two apart (as TRL's GKD trainer does for its generalized JSD; this is
a reimplementation, not a copy) lets each piece be tested on hand-sized tensors.

SAD (paper eq. 4-5, 12-13):
    L = λr · mean_{t ∈ REASON} ℓ_t + λa · mean_{t ∈ ACT} ℓ_t
with ℓ_t either the hard-target cross-entropy -log q(y_t) (`ce_per_token`, eq. 13) or the forward
KL(p_teacher ‖ q_student) of temperature-softened distributions (`kl_per_token`, eq. 4/5/12).
The KL is multiplied by T² (Hinton et al. 2015, "Distilling the knowledge in a neural network"):
the gradient of the softened KL w.r.t. the logits scales as 1/T², so T² keeps its size independent
of the temperature. At T = 1 nothing changes. (TRL's GKD `generalized_jsd_loss` with beta=0 is the
same KL without the T² factor.)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def shift(logits: torch.Tensor, input_ids: torch.Tensor, *masks: torch.Tensor):
    """Align causal-LM outputs with targets: logits at position t predict token t+1, so the
    predictions are ``logits[:, :-1]`` and targets/masks (which mark *target tokens*) are ``[:, 1:]``."""
    return (logits[:, :-1], input_ids[:, 1:], *[m[:, 1:] for m in masks])


def ce_per_token(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target], per position."""
    v = logits.shape[-1]
    out = F.cross_entropy(logits.float().reshape(-1, v), targets.reshape(-1), reduction="none")
    return out.view(targets.shape)


def _xlogy_diff(p: torch.Tensor, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """p·(log p − log q) with 0·(anything) = 0 (a teacher probability of 0 contributes nothing)."""
    safe_log_p = torch.where(p > 0, log_p, torch.zeros_like(log_p))
    return torch.where(p > 0, p * (safe_log_p - log_q), torch.zeros_like(p))


def kl_per_token(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) per position (forward KL, teacher first)."""
    t = float(temperature)
    log_q = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return _xlogy_diff(log_p.exp(), log_p, log_q).sum(-1) * (t * t)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def _topk_teacher(topk_logprobs: torch.Tensor, full: bool = False) -> torch.Tensor:
    """Teacher log-probs (temperature 1) over k+1 outcomes: the top-k tokens and one "other"
    bucket holding the remaining mass 1 − Σ top-k (clamped at 0).
    ``full`` (k = V): there is no bucket (k outcomes); the k values are renormalised, which also
    absorbs the rounding of stored (e.g. float16) log-probs."""
    lp = _at_least_fp32(topk_logprobs)
    if full:
        return F.log_softmax(lp, dim=-1)
    # 1 − Σ cancels when the tail is small; float64 keeps the bucket from being rounding noise
    # (which T > 1 would amplify: a bucket of mass m weighs m^(1/T) before renormalisation)
    other = (1.0 - lp.double().exp().sum(-1, keepdim=True)).clamp(min=0.0)
    log_other = torch.where(other > 0, other.clamp(min=1e-300).log(), torch.full_like(other, float("-inf")))
    return torch.cat([lp, log_other.to(lp.dtype)], dim=-1)


def _topk_student(student_logits: torch.Tensor, topk_ids: torch.Tensor, full: bool = False) -> torch.Tensor:
    """Student log-probs (temperature 1) over the same outcomes: its log-prob of each top-k token
    and, unless ``full``, the log of its mass on every other token (a logsumexp over the rest of
    the vocabulary)."""
    z = _at_least_fp32(student_logits)
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    log_q_k = z.gather(-1, topk_ids.long()) - lse
    if full:
        return log_q_k
    # mass outside the top-k: fill the top-k slots with the most negative finite number so that the
    # logsumexp (and its gradient) stays finite
    rest = z.scatter(-1, topk_ids.long(), torch.finfo(z.dtype).min)
    log_q_other = torch.logsumexp(rest, dim=-1, keepdim=True) - lse
    return torch.cat([log_q_k, log_q_other], dim=-1)


def _soften(log_p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_T ∝ p^(1/T) over the given outcomes (at T = 1 the identity, up to renormalisation)."""
    return F.log_softmax(log_p / float(temperature), dim=-1)


def topk_kl_per_token(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """T² · KL over {top-k tokens, other} from cached teacher top-k log-probs (T = 1 values).

    Both distributions are coarsened the same way, then softened the same way: first to k+1
    outcomes at T = 1 (the teacher's tail, every token outside its top-k, is one bucket; the
    student's bucket is its own mass on those same tokens), then p_T ∝ p^(1/T) over those k+1
    outcomes, the bucket counted as one outcome. So student = teacher gives exactly 0 (and a zero
    gradient) at every T. The teacher's softened tail cannot be coarsened instead (that needs
    Σ_tail p_i^(1/T), which the top-k does not record). Relation to the full KL (docs/distill.md):
    equal when k = V; at T = 1 never larger (coarsening loses information); at T ≠ 1 no bound
    either way. ``topk_ids`` must not repeat an id within a row.
    """
    t = float(temperature)
    full = topk_ids.shape[-1] >= student_logits.shape[-1]
    log_p = _soften(_topk_teacher(topk_logprobs, full), t)
    log_q = _soften(_topk_student(student_logits, topk_ids, full), t)
    return _xlogy_diff(log_p.exp(), log_p, log_q).sum(-1) * (t * t)


def entropy_per_token(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) in nats, per position."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def topk_entropy(topk_logprobs: torch.Tensor) -> torch.Tensor:
    """Entropy of the teacher's top-k + "other" distribution (the tail counted as one outcome, so a
    lower bound of the full entropy; equal when k = V)."""
    log_p = _topk_teacher(topk_logprobs)
    p = log_p.exp()
    return -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(-1)


# ------------------------------------------------------------------ span reduction

Group = tuple[str, torch.Tensor, float]  # (name, 0/1 mask over target tokens, weight)


def group_weights(groups: Sequence[Group], counts: Sequence[float] | None = None) -> torch.Tensor:
    """Per-token weights w_t = Σ_g λ_g · m_g(t) / N_g, so that Σ_t w_t ℓ_t = Σ_g λ_g · mean_g ℓ.

    ``counts`` (N_g) defaults to each mask's sum; the trainer passes the counts of the whole
    optimizer batch (all micro-batches and ranks) so accumulated gradients equal one big batch.
    A group with no tokens contributes nothing.
    """
    w = torch.zeros_like(groups[0][1], dtype=torch.float32)
    for i, (_, mask, lam) in enumerate(groups):
        n = float(mask.sum()) if counts is None else float(counts[i])
        if n > 0 and lam != 0:
            w = w + mask.float() * (lam / n)
    return w


def group_loss(per_token: torch.Tensor, groups: Sequence[Group], counts: Sequence[float] | None = None) -> torch.Tensor:
    """Σ_g λ_g · (Σ_t m_g(t) ℓ_t) / N_g. Masked-out tokens are multiplied by an exact 0 weight, so
    their gradient is exactly zero."""
    w = group_weights(groups, counts).to(per_token.device)
    return (per_token * w).sum()


def span_means(per_token: torch.Tensor, m_reason: torch.Tensor, m_act: torch.Tensor) -> dict[str, float]:
    """Detached mean ℓ over REASON and over ACT tokens (NaN where a span is empty), for logging."""
    out = {}
    with torch.no_grad():
        for name, m in (("reason", m_reason), ("act", m_act)):
            n = float(m.sum())
            out[name] = float((per_token.float() * m.float()).sum() / n) if n else float("nan")
    return out
