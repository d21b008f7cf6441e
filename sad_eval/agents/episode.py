"""One episode, start to end: reset -> (policy turn -> env step)* -> `Episode`.

This is the loop every engine shares (`harness.rollout` steps many of them in lockstep); it lives
here, below the harness, so that a teacher building its few-shot exemplars from its own episodes
(`agents.experts`) needs nothing from the layers above it.
"""

from __future__ import annotations

import time
from typing import Any

from sad_eval.agents.base import EpisodeState, Policy, Turn
from sad_eval.envs.base import EnvError
from sad_eval.trajectory import Episode, Step


class TurnError(EnvError):
    """The policy could not produce a turn for this episode (`Turn.error`): it ends errored, the run goes on."""


def start_episode(env, env_name: str, task_id: str, sample: int = 0, seed: int | None = None) -> EpisodeState:
    # the sample index lets an env give each job its own deterministic state (WebShop's session id)
    obs, info = env.reset(seed=seed, options={"task_id": task_id, "sample": sample})
    return EpisodeState(env=env_name, task_id=info.get("task_id", task_id), task=obs, observation=obs,
                        info=info, sample=sample)


def apply_turn(env, state: EpisodeState, turn: Turn, latency_s: float) -> tuple[bool, dict[str, Any]]:
    """Step the env with a turn's action; append the step to the state. Returns (done, info)."""
    if turn.error:
        raise TurnError(turn.error)
    t0 = time.perf_counter()
    obs, reward, terminated, truncated, info = env.step(turn.action)
    rejected = info.get("rejected")  # the env's typed key (`envs.base`); None: an env without it
    step = Step(reasoning=turn.reasoning, action=turn.action, observation=obs, reward=float(reward),
                latency_s=latency_s + (time.perf_counter() - t0), invalid=turn.invalid, tokens=turn.tokens,
                context_tokens=turn.context_tokens, obs_visible=turn.obs_visible, raw=turn.raw,
                rejected=None if rejected is None else bool(rejected), votes=turn.votes)
    state.steps.append(step)
    state.observation, state.info = obs, info
    return bool(terminated or truncated), info


def finish_episode(state: EpisodeState, split: str, agent: str, seed: int, wall_s: float,
                   error: str | None = None) -> Episode:
    info = state.info
    meta = dict(info.get("meta", {}))
    return Episode(env=state.env, split=split, task_id=state.task_id, agent=agent, seed=seed,
                   success=bool(info.get("success", False)), score=float(info.get("score", 0.0)),
                   steps=state.steps, prompt=state.task, meta=meta, sample=state.sample,
                   status="error" if error else "ok", error=error, wall_s=wall_s)


def run_episode(env, policy: Policy, env_name: str, task_id: str, split: str = "", seed: int = 0,
                sample: int = 0) -> Episode:
    """Play one episode to the end (success, failure or step cap)."""
    t_start = time.perf_counter()
    state = EpisodeState(env=env_name, task_id=task_id, task="", sample=sample)
    try:
        state = start_episode(env, env_name, task_id, sample, seed)
        done = False
        while not done:
            t0 = time.perf_counter()
            (turn,) = policy.act([state])
            done, _ = apply_turn(env, state, turn, time.perf_counter() - t0)
    except EnvError as e:
        return finish_episode(state, split, policy.name, seed, time.perf_counter() - t_start, error=str(e))
    return finish_episode(state, split, policy.name, seed, time.perf_counter() - t_start)
