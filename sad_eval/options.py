"""A settings dataclass is the one source of its command's options.

Each field that a command line can set carries a `Flag` in its metadata (``flag(...)`` below). From
it come, with no second list to keep in step:

- the command's typer options (`command`): name, default, help, panel, bool pairs, repeats;
- the settings object of a parsed command line (`from_params`), the same object the Python API and
  the experiment build;
- the argv that reproduces a settings object (`to_argv`): an experiment's stage commands, which
  therefore parse back to exactly the settings the stage ran with (tests/test_settings.py).

typer is imported only when a command is built, so this module stays cheap for every layer.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

MISSING = dataclasses.MISSING
# command name -> (settings class, fixed fields): what `sad_eval.cli.parse_settings` parses into
SETTINGS_COMMANDS: dict[str, tuple[type, Callable[[], dict[str, Any]] | None]] = {}


@dataclass(frozen=True)
class Flag:
    name: str  # "--max-steps", "-n"
    help: Any = ""  # text, or a function giving it (e.g. what a registry knows)
    off: str | None = None  # a bool's negative twin: "--no-chat" makes the pair --chat/--no-chat
    invert: bool = False  # a bool set by a negative flag alone: --no-progress -> progress=False
    panel: str | None = None  # rich help panel
    required: bool = False
    at_least: int | float | None = None  # the smallest value (None passes: "not set"); `check_bounds`
    hint: str = ""  # added to the bound's error (e.g. what to do instead)
    cli_type: Any = None  # the option's type when it is not the field's (e.g. a dict as repeated ENV=X)
    to_cli: Callable[[Any], Any] | None = None  # field value -> option value (None: as it is)
    from_cli: Callable[[Any], Any] | None = None  # option value -> field value
    commands: tuple[str, ...] | None = None  # the commands that have this option (None: all)
    # per-command changes: {"collect": {"name": "--teacher", "help": ...}}
    per_command: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_command(self, command: str) -> "Flag":
        changes = self.per_command.get(command)
        return dataclasses.replace(self, **changes) if changes else self

    def has(self, command: str) -> bool:
        return self.commands is None or command in self.commands


def flag(default: Any = MISSING, name: str = "", help: str = "", *, default_factory: Any = MISSING,
         **kw: Any) -> Any:
    """A dataclass field with its command-line flag."""
    meta = {"cli": Flag(name, help, **kw)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def cli_fields(cls: type, command: str) -> list[tuple[dataclasses.Field, Flag, Any]]:
    """(field, its flag for ``command``, its type hint) of every field ``command`` exposes."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        fl = f.metadata.get("cli")
        if fl is not None and fl.has(command):
            out.append((f, fl.for_command(command), hints[f.name]))
    return out


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _typer_type(hint: Any) -> Any:
    """A typer-friendly annotation: ``int | None`` -> Optional[int], ``list[str]`` -> List[str]."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _typer_type(args[0]) if len(args) == 1 else str
        return Optional[inner]
    if origin in (list, typing.List):
        (arg,) = typing.get_args(hint) or (str,)
        return typing.List[_typer_type(arg)]
    return hint


def command(cls: type, command_name: str, run: Callable[[Any], Any], doc: str,
            fixed: Callable[[], dict[str, Any]] | None = None) -> Callable[..., Any]:
    """A typer command function whose options are ``cls``'s flags for ``command_name``; it builds the
    settings object (`from_params`) and hands it to ``run``."""
    import typer

    SETTINGS_COMMANDS[command_name] = (cls, fixed)
    params, annotations = [], {}
    for f, fl, hint in cli_fields(cls, command_name):
        default = default_of(f)
        if fl.required:
            default = ...
        elif fl.to_cli is not None and default not in (MISSING, None):
            default = fl.to_cli(default)
        if fl.invert:
            default, names, ann = False, (fl.name,), bool
        else:
            names = (f"{fl.name}/{fl.off}",) if fl.off else (fl.name,)
            ann = _typer_type(fl.cli_type or hint)
        if isinstance(default, list) and not default:
            default = None  # typer's "not given" for a repeatable option
        extra = {}
        if fl.panel:
            extra["rich_help_panel"] = fl.panel
        text = fl.help() if callable(fl.help) else fl.help  # a callable: asked when the command is built
        opt = typer.Option(default, *names, help=text or None, **extra)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann))
        annotations[f.name] = ann

    def callback(**kwargs: Any) -> Any:
        return run(from_params(cls, command_name, kwargs, **(fixed() if fixed else {})))

    callback.__signature__ = inspect.Signature(params)
    callback.__annotations__ = annotations
    callback.__doc__ = doc
    callback.__name__ = f"{command_name.replace('-', '_')}_cmd"
    return callback


def from_params(cls: type, command_name: str, params: dict[str, Any], **fixed: Any) -> Any:
    """The settings object of a parsed command line (click's ``ctx.params``)."""
    values = dict(fixed)
    for f, fl, _ in cli_fields(cls, command_name):
        if f.name not in params:
            continue
        v = params[f.name]
        if fl.invert:
            v = not v
        elif v is None and isinstance(default_of(f), (list, dict)):
            values[f.name] = default_of(f)  # a repeatable option not given
            continue
        elif isinstance(v, tuple):
            v = list(v)
        if fl.from_cli is not None and v is not None:
            v = fl.from_cli(v)
        values[f.name] = v
    return cls(**values)


def check_bounds(obj: Any) -> None:
    """The fields' declared bounds, checked the same way whoever built ``obj`` (a command line, the
    Python API, an experiment config): one error line naming the flag."""
    from sad_eval.errors import SadEvalError

    for f in dataclasses.fields(obj):
        fl, value = f.metadata.get("cli"), getattr(obj, f.name)
        if fl is None or fl.at_least is None or value is None or isinstance(value, bool):
            continue
        if not value >= fl.at_least:
            raise SadEvalError(f"{fl.name} must be at least {fl.at_least}, got {value}{fl.hint}")


def _strings(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(x) for x in value]
    if isinstance(value, float):
        return [repr(value)]
    return [str(value)]


def to_argv(obj: Any, command_name: str, always: tuple[str, ...] = (), fixed: tuple[str, ...] = ()) -> list[str]:
    """The options that give ``obj`` back when parsed by ``command_name``: every field that differs
    from the command's default (and the ones named in ``always``), in the command's order. A setting
    the command cannot express (``fixed``: set by the command itself) is an error, never dropped."""
    shown = {f.name for f, _, _ in cli_fields(type(obj), command_name)}
    for f in dataclasses.fields(obj):
        if f.name not in shown and f.name not in fixed and getattr(obj, f.name) != default_of(f):
            raise ValueError(f"`{command_name}` has no option for {f.name}={getattr(obj, f.name)!r}")
    argv: list[str] = []
    for f, fl, _ in cli_fields(type(obj), command_name):
        value, default = getattr(obj, f.name), default_of(f)
        if not fl.required and f.name not in always and value == default:
            continue
        if fl.to_cli is not None and value is not None:
            value = fl.to_cli(value)
        if isinstance(value, bool) or (fl.off and value is None):
            if fl.invert:
                if not value:
                    argv.append(fl.name)  # --no-progress: progress=False
                continue
            if value is None or (not value and not fl.off):
                raise ValueError(f"{command_name} {fl.name}: no flag gives back {value!r}")
            argv.append(fl.name if value else fl.off)
            continue
        if value is None:
            raise ValueError(f"{command_name} {fl.name}: cannot give back None over the default {default!r}")
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            argv += [fl.name, *_strings(item)]
    return argv


def paths_to_strings(value: list) -> list[str]:
    return [str(v) for v in value]


def path_or_none(value: Any) -> Path | None:
    return None if value is None else Path(value)
