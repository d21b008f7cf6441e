"""One declaration per env: `EnvSpec`, and the registry every consumer asks.

An env is declared once, in its own package (`envs/alfworld_spec.py`, `envs/webshop/spec.py`,
`envs/hotpotqa_spec.py`), by an `EnvSpec`: its gym id and entry point, its splits, the ReAct
instruction and action line of its prompt, its segmentation rule, its scripted teacher and the env
keywords that teacher needs, the metrics it reports beyond TSR/ARL/CoT/latency, and its data-status
rows. The prompt builder, the segmenter, the metrics, the reports, the experiment and the CLI look
an env up here (`get_spec`) instead of keeping tables of env names.

Other packages add envs with `register_env(spec)`, or without any call through the Python
entry-point group ``sad_eval.envs`` (an entry point naming an `EnvSpec`, or a callable returning
one or a list of them), discovered on the first registry query.

This module is cheap to import on purpose (strings and dataclasses only): code that is heavy to
import (TextWorld, the WebShop server, a teacher) is named by ``"module:attr"`` strings and loaded
only when used (`load`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from sad_eval.errors import SadEvalError

ENTRY_POINT_GROUP = "sad_eval.envs"

# span kinds of a segmentation rule (the same strings as `sad_eval.segment.REASON`/`ACT`); a marker
# mapped to None is context (the env's own words), never supervised
REASON, ACT = "REASON", "ACT"

# the generic ReAct turn markers most envs use
REACT_RULE: Mapping[str, str | None] = {"Reasoning": REASON, "Thought": REASON, "Action": ACT, "Observation": None}


@dataclass(frozen=True)
class EnvMetric:
    """A per-env metric beyond the shared ones: the mean, in percent, of the episodes' ``score``
    (``source="score"``) or of one ``meta`` value (``source="meta:KEY"``)."""

    key: str  # key in `metrics.summarize`'s output (e.g. "webshop_score")
    label: str  # column label in `sad-eval report` tables (e.g. "Score")
    source: str = "score"
    short: str = ""  # label in the experiment report (default: `label`)

    @property
    def short_label(self) -> str:
        return self.short or self.label


@dataclass(frozen=True)
class EnvSpec:
    """Everything the project needs to know about one env, declared once."""

    name: str  # short name: `--env NAME`, `Episode.env`
    gym_id: str  # e.g. "sad_eval/ALFWorld-v0"
    entry_point: str  # "module:Class" (imported only when the env is made)
    splits: tuple[str, ...]
    default_split: str  # the default evaluation split
    instruction: str  # the ReAct instruction of the system prompt
    act_line: str  # the format rule's action line, e.g. "Action: <one command>"
    train_split: str = "train"  # where teachers collect
    # segmentation: the env's default rule (marker -> REASON / ACT / None), and named alternatives
    segmentation: Mapping[str, str | None] = field(default_factory=lambda: dict(REACT_RULE))
    extra_rules: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    # a terminal action written on its own transcript line: (action regex, marker, action template),
    # e.g. HotPotQA's ``finish[x]`` is the line ``Answer: x`` (parsed back to ``finish[x]``)
    answer_action: tuple[str, str, str] | None = None
    # markers whose line ends a generated turn (generation stops after that line)
    stop_markers: tuple[str, ...] = ("Action",)
    # the scripted teacher: its agent name, factory ("module:callable", called with the teacher's
    # options) and the env keywords it needs (privileged facts in info["privileged"])
    teacher: str = "expert"
    teacher_factory: str = ""
    teacher_env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # few-shot exemplars (`--exemplars`, agents/exemplars.py), each "module:callable" returning a list
    # of transcripts, or a dict task type -> transcripts (then `task_type` names the task id -> type
    # function): K teacher episodes from train (k, data_root), and ReAct's prompts converted from the
    # data file `react_prompts` (prompts dict, key or "")
    exemplars: str = ""
    react_prompts: str = ""
    react_exemplars: str = ""
    task_type: str = ""
    metrics: tuple[EnvMetric, ...] = ()
    # "module:callable": (data root) -> list of `sad_eval.data.DatasetStatus` rows
    data_status: str = ""
    # how the env words a rejected action, for trajectory files written before steps recorded the
    # env's typed `info["rejected"]` (metrics.step_rejected); new envs leave it empty
    legacy_rejection_prefix: str = ""
    server_url: bool = False  # the env talks to a server (`--server-url` applies)
    summary: str = ""  # one line for help texts and docs

    def __post_init__(self):
        if self.default_split not in self.splits:
            raise SadEvalError(f"env spec {self.name!r}: default split {self.default_split!r} is not one of "
                               f"its splits {self.splits}")
        for rule in (self.segmentation, *self.extra_rules.values()):
            bad = {k for k in rule.values() if k not in (REASON, ACT, None)}
            if bad:
                raise SadEvalError(f"env spec {self.name!r}: segmentation kinds must be REASON, ACT or None, got {bad}")

    @property
    def rules(self) -> dict[str, Mapping[str, str | None]]:
        """Named segmentation rules: the default one under the env's name, then the alternatives."""
        return {self.name: self.segmentation, **self.extra_rules}


def load(target: str) -> Any:
    """The object a ``"module:attr"`` string names (imported now)."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------- the registry

_SPECS: dict[str, EnvSpec] = {}
_discovered = False
_generation = 0  # bumped on every registration, so derived tables (stop regex) can be refreshed


def register_env(spec: EnvSpec, *, replace: bool = False) -> EnvSpec:
    """Add an env to sad-eval (and its gym id to gymnasium). Registering the same spec again is a
    no-op; another spec under a taken name is refused unless ``replace``."""
    global _generation
    if not isinstance(spec, EnvSpec):
        raise SadEvalError(f"register_env expects an EnvSpec, got {type(spec).__name__}")
    old = _SPECS.get(spec.name)
    if old is not None and old != spec and not replace:
        raise SadEvalError(f"env {spec.name!r} is already registered (gym id {old.gym_id})")
    if old is not None and old.gym_id != spec.gym_id:
        _unregister_gym_id(old)
    _SPECS[spec.name] = spec
    _generation += 1
    register_gym_id(spec)
    return spec


def unregister_env(name: str) -> None:
    """Remove an env (tests that add a toy env clean up with this)."""
    global _generation
    spec = _SPECS.pop(name, None)
    _generation += 1
    if spec is not None:
        _unregister_gym_id(spec)


def _unregister_gym_id(spec: EnvSpec) -> None:
    import gymnasium

    gymnasium.registry.pop(spec.gym_id, None)


def register_gym_id(spec: EnvSpec) -> None:
    import gymnasium

    if spec.gym_id not in gymnasium.registry:
        gymnasium.register(id=spec.gym_id, entry_point=spec.entry_point)


def load_entry_point(ep) -> list[EnvSpec]:
    """The specs one ``importlib.metadata.EntryPoint`` of group ``sad_eval.envs`` names: an
    `EnvSpec`, a list of them, or a callable returning either; each is registered."""
    obj = ep.load()
    if callable(obj) and not isinstance(obj, EnvSpec):
        obj = obj()
    specs = [obj] if isinstance(obj, EnvSpec) else list(obj) if isinstance(obj, (list, tuple)) else None
    if specs is None or not all(isinstance(s, EnvSpec) for s in specs):
        raise SadEvalError(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} "
                           f"gives {type(obj).__name__}, not an EnvSpec")
    return [register_env(s) for s in specs]


def discover(entry_points: Iterable | None = None) -> None:
    """Register the envs other installed packages declare in the ``sad_eval.envs`` group."""
    global _discovered
    _discovered = True
    if entry_points is None:
        from importlib.metadata import entry_points as _eps

        entry_points = _eps(group=ENTRY_POINT_GROUP)
    for ep in entry_points:
        load_entry_point(ep)


def _ensure() -> None:
    import sad_eval.envs  # noqa: F401  (registers the built-in envs)

    if not _discovered:
        discover()


def env_names() -> list[str]:
    """Registered env names, in registration order (built-in ones first)."""
    _ensure()
    return list(_SPECS)


def env_specs() -> list[EnvSpec]:
    _ensure()
    return list(_SPECS.values())


def get_spec(name: str) -> EnvSpec:
    """The spec of an env; an unknown name is one clear error listing the known ones."""
    _ensure()
    spec = _SPECS.get(name)
    if spec is None:
        raise SadEvalError(f"unknown env {name!r}; choose one of {', '.join(_SPECS)}")
    return spec


def find_spec(name: str) -> EnvSpec | None:
    """The spec of an env, or None (for code that has a generic fallback)."""
    _ensure()
    return _SPECS.get(name)


def generation() -> int:
    _ensure()
    return _generation


def env_choices() -> str:
    """``alfworld | webshop | hotpotqa | ...`` for help texts."""
    return " | ".join(env_names())


def default_splits_help() -> str:
    """``valid_unseen / test / dev500`` (each env's default evaluation split) for help texts."""
    return " / ".join(s.default_split for s in env_specs())


def cached_by_registry(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Memoize a table derived from the registered specs until the next registration."""
    memo: dict[int, Any] = {}

    def wrapper():
        g = generation()
        if g not in memo:
            memo.clear()
            memo[g] = fn()
        return memo[g]

    wrapper.__doc__ = fn.__doc__
    return wrapper
