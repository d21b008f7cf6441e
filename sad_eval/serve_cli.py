"""The `sad-eval serve` group: long-running servers (`serve webshop`; more areas add theirs)."""

from __future__ import annotations

import typer

serve_app = typer.Typer(help="Run a server in the foreground (WebShop, ...).", no_args_is_help=True)

# modules that add a command to the group: each has `register(serve_app)`
SERVE_MODULES: list[str] = ["sad_eval.envs.webshop.cli", "sad_eval.agents.serve_model"]


def register(app: typer.Typer) -> None:
    import importlib

    for mod in SERVE_MODULES:
        importlib.import_module(mod).register(serve_app)
    app.add_typer(serve_app, name="serve")
