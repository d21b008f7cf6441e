"""`sad-eval distill` (train a student) and `sad-eval distill-topk` (cache teacher top-k log-probs)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sad_eval.agents.exemplars import parse_env_specs
from sad_eval.distill.config import EXEMPLARS_HELP, TrainConfig
from sad_eval.envs.spec import env_choices
from sad_eval.errors import SadEvalError
from sad_eval.options import command

DISTILL_DOC = "Distill teacher trajectories into a student (SAD span-weighted CE/KL, or a baseline)."


def run_distill(cfg: TrainConfig):
    """`sad-eval distill`: train, logging to stderr."""
    from rich.console import Console
    from rich.markup import escape

    from sad_eval.distill.api import run_training

    console = Console(stderr=True)
    return run_training(cfg, log=lambda m: console.print(escape(str(m)), highlight=False))


def register(app: typer.Typer) -> None:
    # the options are TrainConfig's fields (sad_eval/distill/config.py): one source for the command
    # line, the Python API and an experiment's distill stage
    app.command("distill")(command(TrainConfig, "distill", run_distill, DISTILL_DOC))

    @app.command("export")
    def export_cmd(
        runs: List[Path] = typer.Argument(..., help="Trajectory JSONL files (any mix of envs)."),
        fmt: str = typer.Option("chatml", "--format", help="chatml (`messages` with roles, TRL's format) | sharegpt (`conversations`)."),
        out: Path = typer.Option(..., "--out", help="Output JSONL, one conversation per episode."),
        only_success: bool = typer.Option(True, "--only-success/--all-episodes", help="Skip failed episodes (as distill does)."),
        strict: bool = typer.Option(False, "--strict", help="Refuse corrupt lines instead of skipping them."),
    ):
        """Write episodes as SFT conversations (through the one prompt builder: exactly what the student sees)."""
        import json

        from rich.console import Console

        from sad_eval.distill.sft_formats import export_episodes
        from sad_eval.trajectory import load_trajectories

        records, stats = export_episodes(load_trajectories(runs, strict=strict), fmt, only_success)
        if not records:
            raise SadEvalError(f"nothing to export: {stats.summary()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(out)
        Console(stderr=True).print(f"wrote {out}: {stats.summary()}", highlight=False, markup=False, soft_wrap=True)

    @app.command("import")
    def import_cmd(
        file: Path = typer.Argument(..., help="AgentGym (AgentTraj) or ETO-style conversation file: JSON list or JSON lines."),
        out: Path = typer.Option(..., "--out", help="Output trajectory JSONL (teacher data for distill)."),
        env: Optional[str] = typer.Option(None, "--env", help=env_choices() + " (default: from each item_id's prefix)."),
        fmt: str = typer.Option("agentgym", "--format", help="agentgym | eto (both: `conversations` of from/value)."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer for the mask check (default smollm2-135m)."),
        rule: Optional[str] = typer.Option(None, "--rule", help="Segmentation rule (e.g. hotpotqa-two-phase)."),
    ):
        """Import ReAct conversations as teacher episodes, segmented by the env's rules and mask-checked."""
        from rich.console import Console

        from sad_eval.distill.sft_formats import IMPORT_FORMATS, import_conversations, read_records
        from sad_eval.envs import env_id
        from sad_eval.models import load_tokenizer
        from sad_eval.trajectory import TrajectoryWriter

        if fmt not in IMPORT_FORMATS:
            raise SadEvalError(f"unknown import format {fmt!r}; choose one of {', '.join(IMPORT_FORMATS)}")
        if env:
            env_id(env)
        if not file.is_file():
            raise SadEvalError(f"conversation file not found: {file}")
        episodes, stats = import_conversations(read_records(file), env, load_tokenizer(tokenizer or "smollm2-135m"),
                                               source=f"{fmt}:{file.name}", rule=rule)
        if not episodes:
            raise SadEvalError(f"{file}: no usable conversations ({stats.summary()}; first: {stats.first_problem})")
        tmp = out.with_name(out.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with TrajectoryWriter(tmp) as w:
            for ep in episodes:
                w.write(ep)
        tmp.replace(out)
        Console(stderr=True).print(f"wrote {out}: {stats.summary()}"
                                   + (f" (first: {stats.first_problem})" if stats.first_problem else ""),
                                   highlight=False, markup=False, soft_wrap=True)

    @app.command("distill-topk")
    def distill_topk_cmd(
        data: Path = typer.Option(..., "--data", help="Teacher trajectory JSONL."),
        teacher: str = typer.Option(..., "--teacher", help="Teacher checkpoint (same tokenizer as the student)."),
        k: int = typer.Option(20, "--k", help="Log-probs kept per position."),
        out: Optional[Path] = typer.Option(None, "--out", help="Sidecar path (default: DATA.topk.safetensors)."),
        seq_len: int = typer.Option(2048, "--seq-len"),
        reserve: int = typer.Option(128, "--reserve"),
        chat: bool = typer.Option(True, "--chat/--no-chat"),
        only_success: bool = typer.Option(True, "--only-success/--all-episodes"),
        batch_size: int = typer.Option(4, "--batch-size"),
        exemplars: Optional[List[str]] = typer.Option(None, "--exemplars", help=EXEMPLARS_HELP),
    ):
        """Cache a teacher's top-k log-probs over every assistant turn (for `distill --loss kl` without a live teacher)."""
        import warnings

        from rich.console import Console
        from transformers import AutoTokenizer

        from sad_eval.distill import students
        from sad_eval.distill.examples import build_examples, episode_exemplars, exemplar_digests
        from sad_eval.distill.topk import context_meta, sidecar_path, teacher_topk_entries, write_sidecar
        from sad_eval.trajectory import load_trajectories

        console = Console(stderr=True)
        model = students.load_teacher(teacher)
        tok = AutoTokenizer.from_pretrained(students.resolve_model(teacher))
        vocab = model.get_output_embeddings().weight.shape[0]
        if not 1 <= k <= vocab:
            raise SadEvalError(f"--k must be between 1 and the vocabulary size {vocab}")
        specs = parse_env_specs(exemplars)
        episodes = load_trajectories([data])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            examples, stats = build_examples(episodes, tok, seq_len, chat, only_success,
                                             exemplars=episode_exemplars(specs) if specs else (), reserve=reserve)
        if not examples:
            raise SadEvalError(f"{data}: no usable episodes ({stats.summary()})")
        entries = teacher_topk_entries(examples, model, k, batch_size=batch_size)
        ctx = context_meta(tok, seq_len, chat, reserve, exemplar_digests(specs, {ep.env for ep in episodes}))
        path = write_sidecar(out or sidecar_path(data), entries, k, vocab, tokenizer=str(teacher), **ctx)
        console.print(f"wrote {path}: {len(entries)} turns, k={k}")
