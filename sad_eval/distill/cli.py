"""`sad-eval distill` (train a student) and `sad-eval distill-topk` (cache teacher top-k log-probs)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sad_eval.agents.exemplars import parse_env_specs
from sad_eval.envs.spec import env_choices
from sad_eval.errors import SadEvalError

EXEMPLARS_HELP = ("Few-shot exemplars of the prompts, as the harness's --exemplars: SPEC for every env or "
                  "ENV=SPEC (repeatable); the checkpoint records them and is evaluated with them.")


def _rules(items: Optional[List[str]]) -> dict[str, str]:
    out = {}
    for it in items or []:
        env, sep, rule = it.partition("=")
        if not sep or not env or not rule:
            raise SadEvalError(f"--rule {it!r}: expected ENV=RULE, e.g. hotpotqa=hotpotqa-two-phase")
        out[env] = rule
    return out


def register(app: typer.Typer) -> None:
    @app.command("distill")
    def distill_cmd(
        data: List[Path] = typer.Option(..., "--data", help="Teacher trajectory JSONL (repeatable)."),
        student: str = typer.Option(..., "--student", help="Student: a checkpoint dir, smollm2-135m, or a size: tiny | small | base."),
        out: Path = typer.Option(..., "--out", help="Output checkpoint dir (e.g. ckpt/NAME)."),
        method: str = typer.Option("sad", "--method", help="sad | token | no-seg | reason-only | action-only | random-span | lm (plain causal LM)."),
        loss: str = typer.Option("ce", "--loss", help="ce (hard targets) | kl (teacher distributions)."),
        teacher: Optional[str] = typer.Option(None, "--teacher", help="Online teacher checkpoint for --loss kl (same tokenizer)."),
        teacher_topk: Optional[List[Path]] = typer.Option(None, "--teacher-topk", help="Top-k sidecar(s) for --loss kl (default: DATA.topk.safetensors)."),
        init_from_layers: Optional[int] = typer.Option(None, "--init-from-layers", help="Initialise from the first K layers (+embeddings) of --init-source (named sizes) or of --student."),
        init_source: str = typer.Option("smollm2-135m", "--init-source", help="Model whose layers --init-from-layers copies into a named size."),
        max_steps: int = typer.Option(200, "--max-steps", help="Optimizer steps."),
        lr: float = typer.Option(3e-4, "--lr", help="Peak learning rate (AdamW)."),
        warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help="Linear warmup steps (default 5% of --max-steps)."),
        weight_decay: float = typer.Option(0.01, "--weight-decay"),
        batch_size: int = typer.Option(4, "--batch-size", help="Sequences per micro-batch per process."),
        grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimizer step."),
        seq_len: int = typer.Option(2048, "--seq-len", help="Max tokens per training sequence (the harness's context budget)."),
        reserve: int = typer.Option(128, "--reserve", help="The harness's max_new_tokens: contexts are built leaving this room."),
        lambda_reason: float = typer.Option(1.0, "--lambda-reason", help="λr: weight of the REASON mean."),
        lambda_act: float = typer.Option(1.0, "--lambda-act", help="λa: weight of the ACT mean."),
        temperature: float = typer.Option(1.0, "--temperature", help="KD temperature T (loss scaled by T²)."),
        curriculum: str = typer.Option("none", "--curriculum", help="none | sorted | competence."),
        alpha: float = typer.Option(1.0, "--alpha", help="Complexity weight of |REASON| tokens."),
        beta: float = typer.Option(1.0, "--beta", help="Complexity weight of |ACT| tokens."),
        gamma: float = typer.Option(1.0, "--gamma", help="Complexity weight of mean teacher entropy (nats)."),
        competence_steps: Optional[int] = typer.Option(None, "--competence-steps", help="Steps to full competence (default max-steps/2)."),
        seed: int = typer.Option(0, "--seed"),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
        stop_at: Optional[int] = typer.Option(None, "--stop-at", help="Checkpoint and exit after this step (resume later with --resume)."),
        chat: bool = typer.Option(True, "--chat/--no-chat", help="Render with the tokenizer's chat template (as the harness does)."),
        only_success: bool = typer.Option(True, "--only-success/--all-episodes", help="Skip failed teacher episodes."),
        rule: Optional[List[str]] = typer.Option(None, "--rule", help="Segmentation rule per env, ENV=RULE (e.g. hotpotqa=hotpotqa-two-phase)."),
        exemplars: Optional[List[str]] = typer.Option(None, "--exemplars", help=EXEMPLARS_HELP),
        eval_frac: float = typer.Option(0.1, "--eval-frac", help="Share of episodes held out for the per-span eval loss."),
        eval_every: int = typer.Option(50, "--eval-every", help="Held-out loss every N steps (0: never)."),
        save_every: int = typer.Option(0, "--save-every", help="Checkpoint every N steps (0: at the end only)."),
        log_every: int = typer.Option(10, "--log-every", help="Print a line every N steps when there is no progress bar."),
        bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast (default: on for CUDA, off on CPU)."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda (default: cuda if available)."),
        threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    ):
        """Distill teacher trajectories into a student (SAD span-weighted CE/KL, or a baseline)."""
        from rich.console import Console
        from rich.markup import escape

        from sad_eval.api import distill

        console = Console(stderr=True)
        distill(
            data, student, out, method, log=lambda m: console.print(escape(str(m)), highlight=False), loss=loss, teacher=teacher,
            teacher_topk=[str(p) for p in teacher_topk] if teacher_topk else None,
            init_from_layers=init_from_layers, init_source=init_source, max_steps=max_steps, lr=lr,
            warmup_steps=warmup_steps, weight_decay=weight_decay, batch_size=batch_size, grad_accum=grad_accum,
            seq_len=seq_len, reserve=reserve, lambda_reason=lambda_reason, lambda_act=lambda_act,
            temperature=temperature, curriculum=curriculum, alpha=alpha, beta=beta, gamma=gamma,
            competence_steps=competence_steps, seed=seed, resume=resume, stop_at=stop_at, chat=chat, only_success=only_success,
            rules=_rules(rule), exemplars=parse_env_specs(exemplars), eval_frac=eval_frac, eval_every=eval_every, save_every=save_every,
            log_every=log_every, bf16=bf16, device=device, threads=threads)

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
