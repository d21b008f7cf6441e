"""A 4th env built only on sad-eval's public extension point (`EnvSpec`, `TextEnv`, `register_env`):
a deterministic counting game with a scripted teacher. Nothing under `sad_eval/` knows about it.

Task ``count-NN``: count from 1 to NN, one ``say[k]`` per turn. The right next number is
acknowledged; a wrong one is refused (``info["rejected"]``); reaching NN wins (reward 1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from sad_eval.agents.base import EpisodeState, Turn
from sad_eval.envs import EnvMetric, EnvSpec, TextEnv

NAME = "toycount"
SPLITS = {"train": range(2, 10), "test": range(10, 13)}
_SAY = re.compile(r"^\s*say\[(\d+)\]\s*$")
_TARGET = re.compile(r"Count from 1 to (\d+)")
_SAID = re.compile(r"^You said (\d+)\.")


def task_ids(split: str) -> list[str]:
    return [f"count-{n:02d}" for n in SPLITS[split]]


class ToyCountEnv(TextEnv):
    env_name = NAME

    def __init__(self, split: str = "test", data_root: str | Path | None = None, max_steps: int = 20,
                 privileged: bool = False):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        self.max_steps = max_steps
        self._init_text_env(split, task_ids(split), privileged, max_observation=256, max_action=64)

    def _reset_task(self, task_id: str, options: dict[str, Any]):
        self._task, self._target, self._count, self._steps = task_id, int(task_id.split("-")[1]), 0, 0
        return f"Count from 1 to {self._target}, one number per turn.", self._info()

    def _step_task(self, action: str):
        self._steps += 1
        m = _SAY.match(action or "")
        rejected = False
        if not m:
            obs, rejected = "Invalid action: use say[<number>].", True
        elif int(m.group(1)) != self._count + 1:
            obs, rejected = f"Nothing happens: {m.group(1)} is not the next number.", True
        else:
            self._count += 1
            obs = f"You said {self._count}."
        won = self._count == self._target
        truncated = not won and self._steps >= self.max_steps
        info = self._info(rejected=rejected)
        if won or truncated:
            info.update(success=won, score=1.0 if won else 0.0)
        return obs, 1.0 if won else 0.0, won, truncated, info

    def _info(self, **extra) -> dict[str, Any]:
        info = {"task_id": self._task, "steps": self._steps,
                "meta": {"progress": self._count / self._target, "steps": self._steps}, **extra}
        if self.privileged:
            info["privileged"] = {"target": self._target}
        return info


class CountingTeacher:
    """Reads the target from the task and the count from the last observation (what the env showed)."""

    name = "expert"

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        turns = []
        for s in states:
            target = int(_TARGET.search(s.task).group(1))
            said = _SAID.match(s.observation or "")
            count = int(said.group(1)) if said else 0
            turns.append(Turn(reasoning=f"I have counted to {count} of {target}, so the next number is {count + 1}.",
                              action=f"say[{count + 1}]"))
        return turns


def make_teacher(**kwargs) -> CountingTeacher:
    return CountingTeacher()


def data_status(root: Path) -> list:
    from sad_eval.data import DatasetStatus

    return [DatasetStatus(NAME, split, "tasks", len(ids), True) for split, ids in SPLITS.items()]


SPEC = EnvSpec(
    name=NAME,
    gym_id="sad_eval_tests/ToyCount-v0",
    entry_point="toy_env:ToyCountEnv",
    splits=tuple(SPLITS),
    default_split="test",
    instruction="Count up to the number the task names, one number per turn, with say[<number>].",
    act_line="Action: say[<number>]",
    teacher="expert",
    teacher_factory="toy_env:make_teacher",
    metrics=(EnvMetric("toycount_progress", "Prog", "meta:progress"),),
    data_status="toy_env:data_status",
    summary="a counting game (tests only)",
)
