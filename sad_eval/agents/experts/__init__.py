"""Scripted teachers, one module per env. Each env's spec names its teacher (`EnvSpec.teacher`,
`teacher_factory`: ``"module:make_expert"``, called with the teacher's options) and the env
keywords it needs to expose privileged facts in `info` (`EnvSpec.teacher_env_kwargs`)."""

from __future__ import annotations

from sad_eval.envs.spec import get_spec, load
from sad_eval.errors import SadEvalError


def make_expert(env: str, **kwargs):
    """The scripted teacher of an env (`--agent expert` / `--agent oracle`)."""
    spec = get_spec(env)
    if not spec.teacher_factory:
        raise SadEvalError(f"no scripted expert for env {env!r}")
    return load(spec.teacher_factory)(**kwargs)


def expert_env_kwargs(env: str) -> dict:
    """Constructor keywords the env needs so that its expert can read privileged facts."""
    return dict(get_spec(env).teacher_env_kwargs)
