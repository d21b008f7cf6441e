"""Gymnasium envs: ALFWorld (TextWorld games), WebShop (HTTP client), HotPotQA-ReAct (local wiki).

Each env declares itself once with an `EnvSpec` (`sad_eval.envs.spec`); importing this package
registers the three built-in specs and their gym ids. Entry points are strings, so nothing heavy
(TextWorld, the WebShop server) is imported until an env is made. More envs: `register_env(spec)`
or the ``sad_eval.envs`` entry-point group (docs/envs.md).
"""

from __future__ import annotations

from pathlib import Path

import gymnasium

from sad_eval.envs.alfworld_spec import SPEC as ALFWORLD
from sad_eval.envs.base import EnvError, EpisodeOrderError, TextEnv, UnicodeText
from sad_eval.envs.hotpotqa_spec import SPEC as HOTPOTQA
from sad_eval.envs.spec import (EnvMetric, EnvSpec, env_names, env_specs, find_spec, get_spec, register_env,
                                unregister_env)
from sad_eval.envs.webshop.spec import SPEC as WEBSHOP

BUILTIN = (ALFWORLD, WEBSHOP, HOTPOTQA)
for _spec in BUILTIN:
    register_env(_spec)


def env_id(name: str) -> str:
    """The gym id of an env short name (one clear error for an unknown name)."""
    return get_spec(name).gym_id


def make_env(name: str, **kwargs) -> gymnasium.Env:
    """Make an env by short name (alfworld, webshop, hotpotqa, ...); kwargs go to its constructor."""
    return gymnasium.make(env_id(name), disable_env_checker=True, **kwargs)


def data_status(root: Path | None = None) -> list:
    """`sad-eval data status`: every registered env's rows (`EnvSpec.data_status`), then the shared ones."""
    from sad_eval import data
    from sad_eval.envs.spec import load
    from sad_eval.paths import data_root

    root = Path(root or data_root())
    rows = [r for s in env_specs() if s.data_status for r in load(s.data_status)(root)]
    return rows + data.status(root)


__all__ = ["make_env", "env_id", "EnvError", "EpisodeOrderError", "TextEnv", "UnicodeText", "EnvSpec",
           "EnvMetric", "register_env", "unregister_env", "get_spec", "find_spec", "env_names", "env_specs",
           "data_status"]
