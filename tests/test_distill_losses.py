"""Distillation losses and method masks on hand-sized tensors."""

from __future__ import annotations

import math
import random

import pytest
import torch

from sad_eval.distill import losses
from sad_eval.distill.methods import METHODS, groups_for, method_masks, random_span_masks, runs

torch.set_num_threads(1)


def test_ce_matches_hand_computation():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])  # [1, 2, 3]
    targets = torch.tensor([[1, 0]])
    got = losses.ce_per_token(logits, targets)
    want = [math.log(3), -(2 - math.log(math.e ** 2 + 2))]
    assert got.shape == (1, 2)
    assert got[0].tolist() == pytest.approx(want, abs=1e-6)


def test_kl_matches_hand_computation_and_is_forward():
    s = torch.tensor([[0.0, 0.0]])  # student q = (1/2, 1/2)
    t = torch.tensor([[math.log(3.0), 0.0]])  # teacher p = (3/4, 1/4)
    kl = losses.kl_per_token(s, t)
    want = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(p || q)
    assert float(kl) == pytest.approx(want, abs=1e-6)
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert float(kl) != pytest.approx(reverse, abs=1e-3)
    assert float(losses.kl_per_token(t, t)) == pytest.approx(0.0, abs=1e-7)


def test_kl_temperature_softens_and_scales_by_t_squared():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    T = 2.0
    p = torch.softmax(t / T, -1)[0]
    want = float((p * (p.log() - math.log(0.5))).sum()) * T * T
    assert float(losses.kl_per_token(s, t, temperature=T)) == pytest.approx(want, abs=1e-6)


def test_teacher_zero_probability_contributes_nothing():
    s = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    t = torch.tensor([[0.0, 0.0, float("-inf")]])
    kl = losses.kl_per_token(s, t)
    kl.sum().backward()
    q = torch.softmax(s.detach(), -1)[0]
    want = 0.5 * math.log(0.5 / float(q[0])) + 0.5 * math.log(0.5 / float(q[1]))
    assert float(kl.detach()) == pytest.approx(want, abs=1e-6)
    assert torch.isfinite(s.grad).all()


def test_topk_kl_equals_full_kl_when_k_is_vocab():
    torch.manual_seed(0)
    v = 11
    s = torch.randn(2, 3, v, dtype=torch.float64) * 2
    t = torch.randn(2, 3, v, dtype=torch.float64) * 2
    for T in (0.5, 1.0, 2.0):
        lp = torch.log_softmax(t, -1)
        top = lp.topk(v, -1)
        full = losses.kl_per_token(s, t, T)
        cached = losses.topk_kl_per_token(s, top.indices, top.values, T)
        assert torch.allclose(full.double(), cached.double(), atol=1e-5)
    # gradients are finite even though the "other" bucket is empty
    s2 = s.clone().float().requires_grad_(True)
    losses.topk_kl_per_token(s2, top.indices, top.values.float()).sum().backward()
    assert torch.isfinite(s2.grad).all()


def test_topk_kl_with_small_k_is_the_kl_of_the_coarsened_distributions():
    s = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    t = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    lp = torch.log_softmax(t, -1)
    top = lp.topk(2, -1)  # tokens 0, 1
    p = lp.exp()[0]
    q = torch.softmax(s, -1)[0]
    P = [p[0], p[1], p[2] + p[3]]
    Q = [q[0], q[1], q[2] + q[3]]
    want = sum(float(a * (a.log() - b.log())) for a, b in zip(P, Q))
    got = float(losses.topk_kl_per_token(s, top.indices, top.values))
    assert got == pytest.approx(want, abs=1e-6)
    assert got <= float(losses.kl_per_token(s, t)) + 1e-6  # coarsening never increases KL


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0])
def test_topk_kl_is_zero_with_zero_gradient_when_student_equals_teacher(T):
    # k < V: fails on the old code, which softened the teacher's bucket after coarsening and the
    # student's before (T = 2, k = 3 here: loss ~0.4)
    torch.manual_seed(1)
    z = torch.randn(4, 5, 11, dtype=torch.float64) * 3
    top = torch.log_softmax(z, -1).topk(3, -1)
    s = z.clone().requires_grad_(True)
    loss = losses.topk_kl_per_token(s, top.indices, top.values, T)
    loss.sum().backward()
    assert float(loss.detach().abs().max()) < 1e-12
    assert float(s.grad.abs().max()) < 1e-12
    # and away from the fixed point the loss is positive with a nonzero gradient
    s2 = (z + torch.randn_like(z)).requires_grad_(True)
    away = losses.topk_kl_per_token(s2, top.indices, top.values, T)
    away.sum().backward()
    assert float(away.detach().min()) > 0 and float(s2.grad.abs().max()) > 1e-3


def test_topk_kl_softens_the_coarsened_distributions_the_same_way():
    s = torch.tensor([[1.0, 0.0, -1.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    top = torch.log_softmax(t, -1).topk(2, -1)  # tokens 0, 1; tail {2, 3}
    p, q = torch.softmax(t, -1)[0], torch.softmax(s, -1)[0]
    for T in (0.5, 2.0):
        P = torch.stack([p[0], p[1], p[2] + p[3]]) ** (1 / T)
        Q = torch.stack([q[0], q[1], q[2] + q[3]]) ** (1 / T)
        P, Q = P / P.sum(), Q / Q.sum()
        want = float((P * (P / Q).log()).sum()) * T * T
        got = float(losses.topk_kl_per_token(s, top.indices, top.values, T))
        assert got == pytest.approx(want, abs=1e-10)


def test_topk_kl_relation_to_the_full_kl():
    """T = 1: never above the full KL. T != 1: no bound either way (docs/distill.md): cases above and
    below the full softened KL both occur."""
    torch.manual_seed(2)
    t = torch.randn(400, 50, dtype=torch.float64) * 2
    s = t + torch.randn_like(t)
    top = torch.log_softmax(t, -1).topk(5, -1)
    for T in (0.5, 1.0, 2.0):
        ratio = losses.topk_kl_per_token(s, top.indices, top.values, T) / losses.kl_per_token(s, t, T).double()
        if T == 1.0:
            assert float(ratio.max()) <= 1 + 1e-9
        else:
            assert float(ratio.max()) > 1 and float(ratio.min()) < 1


@pytest.mark.slow
@pytest.mark.parametrize("T", [0.5, 1.0, 2.0])
def test_kl_equals_trl_generalized_jsd_beta0_times_t_squared(T):
    """Ours = TRL's GKD `generalized_jsd_loss(beta=0)` · T²: TRL applies no T² factor. TRL is not a
    dependency (it costs ~8 s to import); install it to run this (`pip install -e .[trl]`)."""
    pytest.importorskip("trl")
    import os
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        from trl.experimental.gkd.gkd_trainer import GKDTrainer  # trl >= 0.2x
    except ImportError:
        from trl.trainer.gkd_trainer import GKDTrainer
    torch.manual_seed(3)
    s = torch.randn(2, 7, 13) * 2
    t = torch.randn(2, 7, 13) * 2
    labels = torch.randint(0, 13, (2, 7))
    labels[0, :2] = -100  # masked positions, as TRL's labels mark them
    mask = (labels != -100).long()
    trl = GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=0.0, temperature=T, reduction="batchmean")
    ours = losses.group_loss(losses.kl_per_token(s, t, T), [("all", mask, 1.0)])
    assert float(ours) == pytest.approx(float(trl) * T * T, abs=1e-6)
    top = torch.log_softmax(t, -1).topk(13, -1)  # k = V: the cached loss is the same
    cached = losses.group_loss(losses.topk_kl_per_token(s, top.indices, top.values, T), [("all", mask, 1.0)])
    assert float(cached) == pytest.approx(float(trl) * T * T, abs=1e-6)


def test_entropies():
    logits = torch.zeros(1, 4)
    assert float(losses.entropy_per_token(logits)) == pytest.approx(math.log(4), abs=1e-6)
    lp = torch.log_softmax(logits, -1)
    assert float(losses.topk_entropy(lp.topk(4, -1).values)) == pytest.approx(math.log(4), abs=1e-6)
    # top-2 of a uniform 4-way: outcomes (1/4, 1/4, other 1/2)
    assert float(losses.topk_entropy(lp.topk(2, -1).values)) == pytest.approx(1.5 * math.log(2), abs=1e-6)


def test_span_means_each_span_averaged_on_its_own_with_lambdas():
    per_tok = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 0.5])
    r = torch.tensor([1, 1, 1, 0, 0, 0])
    a = torch.tensor([0, 0, 0, 1, 1, 0])
    traj = torch.ones(6, dtype=torch.long)
    sad = losses.group_loss(per_tok, groups_for("sad", r, a, traj, 1.0, 1.0))
    assert float(sad) == pytest.approx(2.0 + 15.0)
    scaled = losses.group_loss(per_tok, groups_for("sad", r, a, traj, 0.5, 2.0))
    assert float(scaled) == pytest.approx(0.5 * 2.0 + 2.0 * 15.0)
    flat = losses.group_loss(per_tok, groups_for("no-seg", r, a, traj))
    assert float(flat) == pytest.approx((1 + 2 + 3 + 10 + 20) / 5)
    assert float(losses.group_loss(per_tok, groups_for("reason-only", r, a, traj, 3.0, 1.0))) == pytest.approx(6.0)
    assert float(losses.group_loss(per_tok, groups_for("action-only", r, a, traj, 1.0, 3.0))) == pytest.approx(45.0)
    assert float(losses.group_loss(per_tok, groups_for("token", r, a, traj))) == pytest.approx(36.5 / 6)
    # counts of a larger (accumulated) batch divide instead of the local mask sums
    g = groups_for("sad", r, a, traj)
    assert float(losses.group_loss(per_tok, g, counts=[6, 4])) == pytest.approx(6 / 6 + 30 / 4)
    # an empty span contributes nothing (no NaN)
    z = torch.zeros(6, dtype=torch.long)
    assert float(losses.group_loss(per_tok, groups_for("sad", r, z, traj))) == pytest.approx(2.0)
    m = losses.span_means(per_tok, r, a)
    assert m["reason"] == pytest.approx(2.0) and m["act"] == pytest.approx(15.0)


def test_masked_positions_get_exactly_zero_gradient():
    torch.manual_seed(0)
    logits = torch.randn(1, 6, 9, requires_grad=True)
    ids = torch.randint(0, 9, (1, 6))
    r = torch.tensor([[0, 1, 1, 0, 0, 0]])
    a = torch.tensor([[0, 0, 0, 0, 1, 0]])
    lg, tg, rs, as_ = losses.shift(logits, ids, r, a)  # predictions for targets 1..5
    for per_tok in (losses.ce_per_token(lg, tg), losses.kl_per_token(lg, torch.randn(1, 5, 9))):
        logits.grad = None
        loss = losses.group_loss(per_tok, groups_for("sad", rs, as_, torch.ones_like(rs)))
        loss.backward()
        g = logits.grad[0].abs().sum(-1)
        # logits at t predict token t+1: supervised targets 1, 2, 4 -> positions 0, 1, 3
        assert [bool(x) for x in g > 0] == [True, True, False, True, False, False]
        assert g[2] == 0 and g[4] == 0 and g[5] == 0


def test_each_method_builds_the_masks_it_claims():
    r = [0, 1, 1, 0, 0, 0, 1, 0]
    a = [0, 0, 0, 1, 0, 0, 0, 1]
    traj = [0, 1, 1, 1, 1, 1, 1, 1]
    rand = random_span_masks(r, a, traj, random.Random(0))
    got = {m: method_masks(m, r, a, traj, rand) for m in METHODS}
    assert [(n, mk) for n, mk, _ in got["sad"]] == [("reason", r), ("act", a)]
    assert got["no-seg"][0][1] == [0, 1, 1, 1, 0, 0, 1, 1]
    assert [n for n, _, _ in got["reason-only"]] == ["reason"] and got["reason-only"][0][1] == r
    assert [n for n, _, _ in got["action-only"]] == ["act"] and got["action-only"][0][1] == a
    assert got["token"][0][1] == traj
    assert got["lm"][0][1] == [0] + [1] * 7
    assert got["random-span"][0][1] == rand[0] and got["random-span"][1][1] == rand[1]
    with pytest.raises(ValueError):
        method_masks("nope", r, a, traj)


def test_random_span_keeps_counts_runs_and_stays_in_the_trajectory():
    rng = random.Random(1)
    for trial in range(50):
        n = rng.randint(12, 60)
        traj = [0] * 3 + [1] * (n - 3)
        r, a = [0] * n, [0] * n
        pos, kind = 4, 0
        while pos < n - 5:
            length = rng.randint(1, 4)
            for i in range(pos, pos + length):
                (r if kind % 2 == 0 else a)[i] = 1
            pos += length + rng.randint(0, 3)
            kind += 1
        rr, ra = random_span_masks(r, a, traj, random.Random(trial))
        assert sum(rr) == sum(r) and sum(ra) == sum(a)  # same numbers of REASON/ACT tokens
        assert len(runs(rr)) <= len(runs(r)) and len(runs(ra)) <= len(runs(a))  # runs kept whole (may touch)
        assert not any(x and y for x, y in zip(rr, ra))
        assert all(t for t, x, y in zip(traj, rr, ra) if x or y)  # only trajectory positions
    # seeded: same seed, same masks; other seeds move them
    r = [0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    a = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    t = [0] + [1] * 15
    assert random_span_masks(r, a, t, random.Random(5)) == random_span_masks(r, a, t, random.Random(5))
    assert any(random_span_masks(r, a, t, random.Random(s)) != (r, a) for s in range(5))
