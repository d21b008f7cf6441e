"""Per-episode timing under --batch: each episode is charged its own share of the batched
policy call and its own env steps, not its batch mates' work (docs/metrics.md)."""

from __future__ import annotations

import time

from sad_eval.agents.base import Turn


class SlowBatchedPolicy:
    """A policy whose one call costs CALL_S whatever the batch size (as a batched model does)."""

    name = "slow"
    CALL_S = 0.2

    def act(self, states):
        time.sleep(self.CALL_S)
        return [Turn("nothing to do", "click[no such button]") for _ in states]


def test_batched_episodes_are_charged_their_own_share(data_root):
    from sad_eval.envs import make_env
    from sad_eval.harness import plan_jobs, rollout

    episodes = []
    env = make_env("webshop", split="test", data_root=data_root)  # keeps one bundled server up
    try:
        t0 = time.perf_counter()
        rollout(lambda: make_env("webshop", split="test", data_root=data_root, max_steps=3), SlowBatchedPolicy(),
                "webshop", "test", plan_jobs(["fixed_1", "fixed_2", "fixed_3", "fixed_4"]), batch=4,
                on_episode=episodes.append)
        elapsed = time.perf_counter() - t0
    finally:
        env.close()
    assert len(episodes) == 4 and all(len(e.steps) == 3 for e in episodes)
    # a step is charged a quarter of the 0.2 s call (plus its own env step), not the whole call
    for e in episodes:
        for s in e.steps:
            assert SlowBatchedPolicy.CALL_S / 4 <= s.latency_s < SlowBatchedPolicy.CALL_S
    # the episodes' own times partition the run instead of each counting all of it
    assert sum(e.wall_s for e in episodes) <= elapsed
    assert all(e.wall_s >= sum(s.latency_s for s in e.steps) for e in episodes)
