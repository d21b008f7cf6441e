"""The contract every sad-eval env keeps, owned by one base class: `TextEnv`.

- constructor keywords: `split`, `data_root` (None = the installed data root), `max_steps`,
  `privileged` (default False: the facts a scripted teacher needs are computed and put in
  `info["privileged"]` only when the teacher asks for them; `EnvSpec.teacher_env_kwargs`);
- `task_ids` (property): the split's task ids in their stable, sorted order;
- `reset(seed=None, options={"task_id": id} | {"index": i})` -> `(observation, info)`: the task
  by id (one of this split's; an id of another split is an error naming the split), by index
  (``-n <= i < n``, an error naming the range otherwise), or without either a draw with the env's
  seeded RNG; the observation is the task as the agent first sees it;
- `step(action: str)` -> `(obs, reward, terminated, truncated, info)`; stepping before the first
  reset or after the episode ended raises `EpisodeOrderError` (a `gymnasium.error.ResetNeeded`):
  every env behaves the same there, and no agent can keep acting in a finished episode unnoticed;
- typed `info` keys: `task_id` (always); `rejected` (bool, after every step: the env could not
  carry out a well-formed action: ALFWorld's "Nothing happens.", an "Invalid action" answer);
  `success` (bool) and `score` (float, the env's own score) on the final step; `meta` (dict)
  per-episode values the harness records (task type, EM/F1...); `privileged` (only when built
  with ``privileged=True``);
- observation and action spaces are `UnicodeText`: any text up to a length, so every page and
  Wikipedia sentence is inside the observation space (Gymnasium's `Text` with its default
  alphanumeric charset is not);
- failures of the env's backend (a server that is down) raise `EnvError`: the harness marks that
  episode errored, not failed.
"""

from __future__ import annotations

import string
from typing import Any, Sequence

import gymnasium
import numpy as np
from gymnasium import spaces

from sad_eval.errors import SadEvalError

MAX_OBSERVATION = 1 << 20  # characters; a WebShop results page is ~10^4
MAX_ACTION = 1 << 13


class EnvError(SadEvalError):
    """The env's backend failed (server down, engine crash): not the agent's fault."""


class EpisodeOrderError(SadEvalError, gymnasium.error.ResetNeeded):
    """`step` before the first `reset`, or after the episode ended."""


class UnicodeText(spaces.Text):
    """Text of any characters, ``min_length..max_length`` long. `sample` draws printable ASCII
    (Gymnasium's `Text` needs a finite charset to sample from; membership needs none)."""

    def __init__(self, max_length: int, min_length: int = 0, seed: int | np.random.Generator | None = None):
        super().__init__(max_length, min_length=min_length, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnicodeText) and (self.min_length, self.max_length) == (other.min_length, other.max_length)


class TextEnv(gymnasium.Env[str, str]):
    """Base of the text envs: task selection, reset/step order and the typed info keys.

    A subclass calls `_init_text_env` in its constructor and implements `_reset_task(task_id,
    options) -> (obs, info)` and `_step_task(action) -> (obs, reward, terminated, truncated, info)`.
    """

    env_name = "text"  # in messages ("unknown ALFWorld task id ...")
    metadata = {"render_modes": [], "render_fps": 1}  # fps: turn-based text, set only to quiet the checker

    def _init_text_env(self, split: str, task_ids: Sequence[str], privileged: bool = False,
                       max_observation: int = MAX_OBSERVATION, max_action: int = MAX_ACTION) -> None:
        self.split = split
        self.privileged = bool(privileged)
        self._task_ids = list(task_ids)
        self._task_set = frozenset(self._task_ids)
        self.observation_space = UnicodeText(max_observation)
        self.action_space = UnicodeText(max_action)
        self._started = False
        self._over = True

    @property
    def task_ids(self) -> list[str]:
        return list(self._task_ids)

    def select_task(self, options: dict[str, Any] | None) -> str:
        """The task a reset plays: by ``task_id``, by ``index``, or a seeded draw."""
        options = options or {}
        n = len(self._task_ids)
        if "task_id" in options:
            tid = str(options["task_id"])
            if tid not in self._task_set:
                raise SadEvalError(f"unknown {self.env_name} task id {tid!r} for split {self.split!r} "
                                   f"({n} tasks; `task_ids` lists them)")
            return tid
        if "index" in options:
            i = int(options["index"])
            if not -n <= i < n:
                raise SadEvalError(f"{self.env_name} task index {i} out of range: split {self.split!r} has {n} "
                                   f"tasks (index {-n}..{n - 1})")
            return self._task_ids[i]
        if not n:
            raise SadEvalError(f"{self.env_name} split {self.split!r} has no tasks")
        return self._task_ids[int(self.np_random.integers(n))]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        tid = self.select_task(options)
        self._over = True  # until the new episode has started
        obs, info = self._reset_task(tid, dict(options or {}))
        self._started, self._over = True, False
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise EpisodeOrderError(f"{self.env_name}: call reset() before step()")
        if self._over:
            raise EpisodeOrderError(f"{self.env_name}: the episode is over: call reset() first")
        obs, reward, terminated, truncated, info = self._step_task(action)
        terminated, truncated = bool(terminated), bool(truncated)
        info["rejected"] = bool(info.get("rejected", False))
        if terminated or truncated:
            self._over = True
            info.setdefault("success", False)
            info.setdefault("score", 0.0)
        return obs, float(reward), terminated, truncated, info

    def _reset_task(self, task_id: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def _step_task(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        raise NotImplementedError
