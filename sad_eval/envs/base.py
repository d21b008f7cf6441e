"""What every sad-eval env shares, beyond Gymnasium's `reset`/`step` contract.

Contract (all three envs):
- constructor keywords: `split`, `data_root` (None = the installed data root), `max_steps`;
- `reset(seed=None, options={"task_id": ...} | {"index": i})` -> `(observation, info)`; the
  observation is the task as the agent first sees it;
- `step(action: str)` -> `(obs, reward, terminated, truncated, info)`;
- `info` always has `task_id`; on the final step `success` (bool) and `score` (float, the env's
  own score); `meta` (dict) holds per-episode values the harness records (task type, EM/F1...);
  privileged facts for scripted experts live under `info["privileged"]`;
- `task_ids` (property): the split's task ids in their stable, sorted order;
- failures of the env's backend (a server that is down) raise `EnvError`: the harness marks
  that episode errored, not failed.
"""

from __future__ import annotations

from sad_eval.errors import SadEvalError


class EnvError(SadEvalError):
    """The env's backend failed (server down, engine crash): not the agent's fault."""


ENV_IDS = {
    "alfworld": "sad_eval/ALFWorld-v0",
    "webshop": "sad_eval/WebShop-v0",
    "hotpotqa": "sad_eval/HotPotQA-v0",
}

DEFAULT_SPLITS = {"alfworld": "valid_unseen", "webshop": "test", "hotpotqa": "dev500"}


def env_id(name: str) -> str:
    if name not in ENV_IDS:
        raise SadEvalError(f"unknown env {name!r}; choose one of {', '.join(ENV_IDS)}")
    return ENV_IDS[name]
