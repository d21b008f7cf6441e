"""Scripted teachers, one module per env; each exposes `make_expert(**kwargs) -> Policy`."""

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
