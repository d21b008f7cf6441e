"""`sad-eval experiment CONFIG.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("experiment")
    def experiment_cmd(
        config: Path = typer.Argument(..., help="Experiment YAML (see configs/)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/NAME)."),
        stage: Optional[List[str]] = typer.Option(None, "--stage", help="Only these stages: collect, distill, eval, "
                                                  "report (repeat the option or separate by commas)."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                              help="CPU threads for distill and eval (overrides the config)."),
        eval_workers: Optional[int] = typer.Option(None, "--eval-workers", min=1,
                                                   help="Eval processes per student, each on every N-th task "
                                                        "(overrides the config's eval.workers; with --threads 1 on a "
                                                        "small CPU)."),
        students: Optional[List[str]] = typer.Option(None, "--students",
                                                     help="Only these students (by name): one shard of the study "
                                                          "(repeat or use commas)."),
        seeds: Optional[List[str]] = typer.Option(None, "--seeds", help="Only these seeds: one shard of the study "
                                                  "(repeat or use commas: --seeds 1,2)."),
        methods: Optional[List[str]] = typer.Option(None, "--methods", help="Only these methods: one shard of the "
                                                    "study (repeat or use commas: --methods sad,no-seg)."),
        merge: Optional[List[Path]] = typer.Option(None, "--merge",
                                                   help="Another shard's report/results_long.csv (summaries) or "
                                                        "report/episodes.csv (episodes, for the paired-by-task table) "
                                                        "to add to the tables."),
    ):
        """Collect teacher trajectories, distill students, evaluate them, and write the report.

        Resumable: finished stages with unchanged inputs are skipped; an interrupted stage resumes.
        Shard a long study with --students/--seeds/--methods (per machine or per session) and bring the shards
        together with --merge OTHER_RUN/report/results_long.csv (and its episodes.csv). Where a run
        directory does not outlive a session, commit a shard's two CSVs and merge them in the next one.
        """
        from rich.console import Console

        from sad_eval.errors import SadEvalError
        from sad_eval.experiment import run_experiment
        from sad_eval.reports.experiment_report import print_report

        stage, students, methods = _split(stage), _split(students), _split(methods)
        try:
            seed_list = [int(s) for s in _split(seeds)]
        except ValueError:
            raise SadEvalError(f"--seeds takes integers (e.g. --seeds 0,1), not {','.join(seeds or [])!r}") from None
        bad = [s for s in stage or [] if s not in ("collect", "distill", "eval", "report")]
        if bad:
            raise SadEvalError(f"unknown stage(s) {bad}; choose from collect, distill, eval, report")
        console = Console()
        root = run_experiment(config, out, log=console.print, stages_only=tuple(stage) if stage else None,
                              progress=not no_progress, threads=threads, eval_workers=eval_workers,
                              only_students=tuple(students or ()), only_seeds=tuple(seed_list),
                              only_methods=tuple(methods or ()),
                              merge=tuple(merge or ()))
        print_report(root)


def _split(values: list[str] | None) -> list[str]:
    """`--methods sad --methods no-seg` and `--methods sad,no-seg` mean the same."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
