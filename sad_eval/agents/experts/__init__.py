"""Scripted teachers, one module per env; each exposes `make_expert(**kwargs) -> Policy`, and may
declare `ENV_KWARGS`: what its env must be built with to expose privileged facts in `info`."""

from __future__ import annotations

import importlib

from sad_eval.errors import SadEvalError

EXPERT_MODULES = {
    "alfworld": "sad_eval.agents.experts.alfworld",
    "webshop": "sad_eval.agents.experts.webshop",
    "hotpotqa": "sad_eval.agents.experts.hotpotqa",
}


def make_expert(env: str, **kwargs):
    """The scripted teacher of an env (`--agent expert` / `--agent oracle`)."""
    if env not in EXPERT_MODULES:
        raise SadEvalError(f"no scripted expert for env {env!r}")
    return importlib.import_module(EXPERT_MODULES[env]).make_expert(**kwargs)


def expert_env_kwargs(env: str) -> dict:
    """Constructor keywords the env needs so that its expert can read privileged facts."""
    if env not in EXPERT_MODULES:
        return {}
    return dict(getattr(importlib.import_module(EXPERT_MODULES[env]), "ENV_KWARGS", {}))
