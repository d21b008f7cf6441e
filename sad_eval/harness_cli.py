"""`sad-eval eval`, `sad-eval collect`, and the bare form `sad-eval --agent A --env E`."""

from __future__ import annotations

from pathlib import Path

import typer

from sad_eval.errors import SadEvalError
from sad_eval.options import command
from sad_eval.settings import COLLECT, EVAL, RunSettings


def run_command(settings: RunSettings, show_table: bool = True) -> Path:
    """`eval`/`collect` through the Python API (`sad_eval.api.run`), then the metrics table."""
    from sad_eval import api

    res = api.run(settings)
    report_errors(res.new, res.path)
    if show_table:
        from sad_eval.reports import tables

        tables.render(tables.metrics_frame({tables.run_name(res.path): res.episodes}, res.teacher), "table")
        typer.echo(f"trajectories: {res.path}")
    return res.path


def report_errors(new: list, out: Path) -> None:
    """Errored episodes (env or server failures) are not task failures: a run where every episode
    errored measured nothing, so it ends with an error (exit 2) instead of a table of zeros."""
    errored = [ep for ep in new if ep.status == "error"]
    if not errored:
        return
    first = (errored[0].error or "unknown error").splitlines()[0][:300]
    if len(errored) == len(new):
        raise SadEvalError(f"all {len(new)} episodes errored (first: {first}); they are kept in {out} "
                           "and run again when you rerun the command (unless --no-retry-errors)")
    typer.echo(f"warning: {len(errored)} of {len(new)} episodes errored (first: {first}); "
               "rerun the command to retry them", err=True)


COMMANDS = {
    EVAL: "Evaluate an agent on an env: record trajectories (resumable) and print TSR/ARL/CoT/latency.",
    COLLECT: "Collect a teacher training set (K samples per task) with the same engine as `eval`.",
}


def register(app: typer.Typer) -> None:
    # the options are RunSettings' fields (sad_eval/settings.py): one source for the command line, the
    # Python API and an experiment's stage commands
    for name, doc in COMMANDS.items():
        app.command(name)(command(RunSettings, name, run_command, doc, fixed=lambda name=name: {"kind": name}))
