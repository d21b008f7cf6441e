"""Gymnasium envs: ALFWorld (TextWorld games), WebShop (HTTP client), HotPotQA-ReAct (local wiki).

Importing this package registers the ids; entry points are strings, so nothing heavy (TextWorld,
the WebShop server) is imported until an env is made.
"""

from __future__ import annotations

import gymnasium

from sad_eval.envs.base import DEFAULT_SPLITS, ENV_IDS, EnvError, env_id

_ENTRY_POINTS = {
    "alfworld": "sad_eval.envs.alfworld:ALFWorldEnv",
    "webshop": "sad_eval.envs.webshop.env:WebShopEnv",
    "hotpotqa": "sad_eval.envs.hotpotqa:HotPotQAEnv",
}

for _name, _id in ENV_IDS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_ENTRY_POINTS[_name])


def make_env(name: str, **kwargs) -> gymnasium.Env:
    """Make an env by short name (alfworld, webshop, hotpotqa); kwargs go to its constructor."""
    return gymnasium.make(env_id(name), disable_env_checker=True, **kwargs)


__all__ = ["make_env", "EnvError", "ENV_IDS", "DEFAULT_SPLITS", "env_id"]
