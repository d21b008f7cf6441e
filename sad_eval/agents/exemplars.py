"""Few-shot exemplars for model agents (`--exemplars`), as ReAct prompts its agents.

A spec string names where they come from:

- ``K`` (an integer): K transcripts of our scripted teachers on the **train** split, in the
  ``Reasoning:``/``Action:`` format the agent must produce. ALFWorld: K per task type, the episode's
  own type (ReAct prompted each ALFWorld task with two exemplars of its type); HotPotQA: K
  type-balanced oracle episodes; WebShop: the oracle's first K won train episodes. Built once and
  cached under ``cache_root()/exemplars``.
- ``react``: ReAct's original prompts from the data dir (ysymyth/ReAct), converted to this format:
  ALFWorld ``alfworld_3prompts.json`` (``react_{type}_1`` then ``react_{type}_0``, the two ReAct
  used), HotPotQA ``prompts_naive.json`` ``webthink_simple6``. ``react:KEY`` names another entry of
  the env's file (e.g. ``react:webthink_simple_3``, ``react:react_put_2``). WebShop's ReAct prompt
  lives in a notebook, not in the data dir: refused.
- ``0`` / empty: none (zero-shot).

The chosen exemplars go into the system prompt through the one prompt builder
(`prompts.system_prompt`), for the teacher that collects, the student that trains
(`sad-eval distill --exemplars`) and the agent that is evaluated alike. Exemplars never come from an
eval split: the teacher builders run on ``train`` only and ReAct's prompts are fixed text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from sad_eval.envs.spec import get_spec, load
from sad_eval.errors import SadEvalError

REACT = "react"


def parse_spec(spec: Any) -> str:
    """Normalise an ``--exemplars`` value: ``""`` (none), ``"K"`` or ``"react[:KEY]"``; else one clear error."""
    s = "" if spec is None else str(spec).strip()
    if s in ("", "0", "none"):
        return ""
    if s == REACT or (s.startswith(REACT + ":") and s[len(REACT) + 1:].strip()):
        return s
    if s.isdigit():
        return str(int(s))
    raise SadEvalError(f"bad --exemplars {spec!r}: expected a count K (teacher episodes from train), "
                       "react, or react:KEY (ReAct's prompts)")


def parse_env_specs(items: Sequence[str] | str | None) -> dict[str, str]:
    """``["2"]`` (every env) or ``["alfworld=react", "hotpotqa=6"]`` -> {env or "*": spec}."""
    if items is None:
        return {}
    if isinstance(items, (str, int)):
        items = [str(items)]
    out: dict[str, str] = {}
    for it in items:
        env, sep, rest = str(it).partition("=")
        key, spec = (env.strip(), rest) if sep else ("*", env)
        if sep and not key:
            raise SadEvalError(f"--exemplars {it!r}: expected SPEC or ENV=SPEC")
        out[key] = parse_spec(spec)
    return {k: v for k, v in out.items() if v}


def spec_for(specs: Mapping[str, str], env: str) -> str:
    return specs.get(env, specs.get("*", ""))


@dataclass
class Exemplars:
    """The exemplars of one env under one spec; ``for_task`` gives those a task's prompt carries."""

    env: str
    spec: str
    by_type: dict[str, list[str]] = field(default_factory=dict)  # ALFWorld: task type -> exemplars
    shared: list[str] = field(default_factory=list)  # every other env

    def for_task(self, task_id: str) -> tuple[str, ...]:
        if self.by_type:
            from sad_eval.envs.spec import get_spec, load

            task_type_of = load(get_spec(self.env).task_type)
            return tuple(self.by_type.get(task_type_of(task_id), ()))
        return tuple(self.shared)

    def digest(self) -> str:
        """Short hash of every exemplar text: a prompt identity for manifests and top-k sidecars."""
        blob = json.dumps({"env": self.env, "by_type": self.by_type, "shared": self.shared}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, str]:
        return {"spec": self.spec, "sha256": self.digest()}

    def __bool__(self) -> bool:
        return bool(self.by_type or self.shared)


def load_exemplars(env: str, spec: Any, data_root: str | Path | None = None) -> Exemplars:
    """Build (or read from cache) the exemplars ``spec`` names for ``env``."""
    spec = parse_spec(spec)
    if not spec:
        return Exemplars(env, "")
    if spec.startswith(REACT):
        return _react(env, spec, data_root)
    k = int(spec)
    env_spec = get_spec(env)
    if not env_spec.exemplars:
        raise SadEvalError(f"no exemplars for env {env!r}")
    return _exemplars(env, spec, load(env_spec.exemplars)(k, data_root))


def _exemplars(env: str, spec: str, built: Mapping[str, Sequence[str]] | Sequence[str]) -> Exemplars:
    """A builder's answer: a dict (task type -> exemplars) or one list for every task."""
    if isinstance(built, Mapping):
        return Exemplars(env, spec, by_type={t: list(ex) for t, ex in built.items()})
    return Exemplars(env, spec, shared=list(built))


def _react(env: str, spec: str, data_root) -> Exemplars:
    from sad_eval.data import require

    env_spec = get_spec(env)
    if not env_spec.react_prompts:
        raise SadEvalError(f"--exemplars {spec}: ReAct's {env} prompt is not in the data dir (it is inline in "
                           "ReAct's notebook); use --exemplars K (teacher episodes from train)")
    key = spec.partition(":")[2].strip()
    prompts = json.loads(require(env_spec.react_prompts, Path(data_root) if data_root else None).read_text())
    if key and key not in prompts:
        raise SadEvalError(f"--exemplars {spec}: no {key!r} in {env_spec.react_prompts} "
                           f"(has {', '.join(sorted(prompts)[:8])}…)")
    return _exemplars(env, spec, load(env_spec.react_exemplars)(prompts, key))


