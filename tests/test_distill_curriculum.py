"""Curriculum orderings: complexity, sorted easy -> hard, competence pools, seeded shuffle."""

from __future__ import annotations

import math

import pytest

from sad_eval.distill.curriculum import Schedule, competence, complexity


def test_complexity_formula():
    assert complexity(10, 4, 2.0, alpha=1.0, beta=2.0, gamma=3.0) == 10 + 8 + 6
    assert complexity(10, 4) == 10 + 4  # no teacher logits: H = 0


def test_sorted_goes_easy_to_hard_each_epoch():
    scores = [5.0, 1.0, 3.0, 2.0, 4.0]
    s = Schedule(scores, size=2, kind="sorted")
    stream = [i for step in range(5) for i in s.batch(step)]  # 10 = two epochs
    assert stream == [1, 3, 2, 4, 0] * 2


def test_none_is_a_seeded_shuffle_covering_every_example_once_per_epoch():
    scores = list(range(7))
    a = Schedule(scores, size=7, kind="none", seed=3)
    b = Schedule(scores, size=7, kind="none", seed=3)
    c = Schedule(scores, size=7, kind="none", seed=4)
    assert a.batch(0) == b.batch(0) and a.batch(1) == b.batch(1)
    assert sorted(a.batch(0)) == list(range(7)) and sorted(a.batch(1)) == list(range(7))
    assert a.batch(0) != c.batch(0) or a.batch(1) != c.batch(1)
    # batches that straddle an epoch boundary still follow the stream
    s = Schedule(scores, size=3, kind="none", seed=3)
    stream = [i for step in range(7) for i in s.batch(step)]
    assert sorted(stream[:7]) == list(range(7)) and sorted(stream[7:14]) == list(range(7))


def test_competence_schedule_and_pools():
    assert competence(0, 100, 0.1) == pytest.approx(0.1)
    assert competence(50, 100, 0.1) == pytest.approx(math.sqrt(50 * 0.99 / 100 + 0.01))
    assert competence(100, 100) == 1.0 and competence(500, 100) == 1.0
    scores = [float(i) for i in range(100)][::-1]  # example 99 is the easiest
    s = Schedule(scores, size=4, kind="competence", seed=0, competence_steps=100, c0=0.1)
    easiest10 = set(range(90, 100))
    assert set(s.batch(0)) <= easiest10  # c(0) = c0: the easiest 10%
    assert set(s.batch(1)) <= set(range(100 - math.ceil(competence(1, 100) * 100), 100))
    late = set().union(*(set(s.batch(t)) for t in range(100, 160)))
    assert len(late - easiest10) > 0  # the whole set is open later
    assert s.batch(7) == Schedule(scores, 4, "competence", 0, 100, 0.1).batch(7)  # deterministic (resume)
    assert len(set(s.batch(120))) == 4  # without replacement when the pool allows


def test_unknown_curriculum():
    with pytest.raises(ValueError):
        Schedule([1.0], 1, kind="nope")
