"""Which examples make up each optimizer step: a curriculum on trajectory complexity.

Complexity of an episode (SAD §3.4): ``C = α·|R| + β·|A| + γ·H``, with |R|, |A| its REASON and
ACT target token counts and H the mean teacher entropy (nats) over those tokens when teacher
logits are available (online teacher or top-k cache), else 0. Every window of an episode gets the
episode's complexity.

Orders (all deterministic functions of (seed, step), so a resumed run sees the same batches):
- ``none``: a seeded shuffle per epoch (epoch e uses seed + e).
- ``sorted``: easy -> hard by C (ties by example index), again each epoch.
- ``competence``: Platanios et al. 2019 ("Competence-based curriculum learning for NMT"), square-root
  schedule ``c(t) = min(1, sqrt(t·(1 - c0²)/T + c0²))``: at step t the batch is drawn uniformly
  (seeded by step) from the easiest ceil(c(t)·N) examples; T (``competence_steps``) defaults to half
  the run, c0 to 0.1.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

CURRICULA = ("none", "sorted", "competence")


def complexity(n_reason: float, n_act: float, entropy: float = 0.0, alpha: float = 1.0, beta: float = 1.0,
               gamma: float = 1.0) -> float:
    return alpha * n_reason + beta * n_act + gamma * entropy


def competence(step: int, total: int, c0: float = 0.1) -> float:
    """sqrt competence schedule c(t) in [c0, 1]."""
    if total <= 0:
        return 1.0
    return min(1.0, math.sqrt(step * (1.0 - c0 * c0) / total + c0 * c0))


class Schedule:
    """Global batches of example indices: ``batch(step)`` has ``size`` indices (all ranks' rows)."""

    def __init__(self, scores: Sequence[float], size: int, kind: str = "none", seed: int = 0,
                 competence_steps: int = 1000, c0: float = 0.1):
        if kind not in CURRICULA:
            raise ValueError(f"unknown curriculum {kind!r}; choose one of {', '.join(CURRICULA)}")
        if not scores:
            raise ValueError("no examples to schedule")
        self.n, self.size, self.kind, self.seed = len(scores), size, kind, seed
        self.competence_steps, self.c0 = competence_steps, c0
        self.by_difficulty = sorted(range(self.n), key=lambda i: (scores[i], i))
        self._cache: tuple[int, list[int]] | None = None

    def _epoch_order(self, epoch: int) -> list[int]:
        if self.kind == "sorted":
            return self.by_difficulty
        if self._cache is None or self._cache[0] != epoch:
            order = list(range(self.n))
            random.Random(self.seed + epoch).shuffle(order)
            self._cache = (epoch, order)
        return self._cache[1]

    def batch(self, step: int) -> list[int]:
        if self.kind == "competence":
            c = competence(step, self.competence_steps, self.c0)
            pool = self.by_difficulty[:max(1, math.ceil(c * self.n))]
            rng = random.Random(self.seed * 1_000_003 + step)
            if len(pool) >= self.size:
                return rng.sample(pool, self.size)
            return [rng.choice(pool) for _ in range(self.size)]
        # a stream of epochs, cut into consecutive batches
        start = step * self.size
        out = []
        while len(out) < self.size:
            epoch, pos = divmod(start + len(out), self.n)
            order = self._epoch_order(epoch)
            out += order[pos:pos + self.size - len(out)]
        return out

    def epoch(self, step: int) -> float:
        return step * self.size / self.n
