"""`sad-eval serve webshop`: run the WebShop server in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(serve_app: typer.Typer) -> None:
    """Add the `webshop` command to the `serve` group."""

    @serve_app.command("webshop")
    def serve_webshop(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
        port: int = typer.Option(3000, "--port", help="Port (0 = any free port)."),
        goals: str = typer.Option("synthetic", "--goals", help="Goal set: only `synthetic` (the 1k catalogue's goals)."),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Data root (default: the installed data)."),
        threads: int = typer.Option(8, "--threads", help="Waitress worker threads."),
        max_sessions: int = typer.Option(10_000, "--max-sessions", help="Most sessions kept (oldest dropped)."),
        session_ttl: float = typer.Option(3600.0, "--session-ttl", help="Idle seconds before a session expires."),
        attrs: bool = typer.Option(False, "--attrs", help="Show the Attributes tab on item pages."),
    ):
        """Serve WebShop (the original's routes) over the 1k catalogue with synthetic goals."""
        from sad_eval.envs.webshop.server import serve
        from sad_eval.errors import SadEvalError

        if goals != "synthetic":
            raise SadEvalError(f"unknown goal set {goals!r}: only `synthetic` is available "
                               "(the human goals' products are not in the 1k catalogue)")
        serve(host, port, data_root, threads, None, max_sessions, session_ttl, attrs, echo=typer.echo)
