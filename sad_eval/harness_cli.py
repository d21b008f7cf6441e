"""`sad-eval eval`, `sad-eval collect`, and the bare form `sad-eval --agent A --env E`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sad_eval.envs.spec import default_splits_help, env_choices
from sad_eval.errors import SadEvalError


def run_command(agent: str, env: str, split: Optional[str] = None, n: Optional[int] = None,
                teacher: Optional[Path] = None, kind: str = "eval", show_table: bool = True,
                **options) -> Path:
    """`eval`/`collect` through the Python API (`sad_eval.api`), then the metrics table."""
    from sad_eval import api

    if kind == "collect":
        res = api.collect(agent, env, split or "train", n, **options)
    else:
        res = api.evaluate(agent, env, split, n, teacher=teacher, **options)
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


DECODING_PANEL = "Decoding (model agents)"
BATCH_HELP = "Episodes stepped in lockstep, one generate per turn (default 1 for scripted experts, 8 for models)."
RESUME_HELP = "Resume the output file (the default; the explicit form): only missing episodes are played."
TOP_P_HELP = "Nucleus sampling mass (with --temperature > 0)."
MNT_HELP = "Token budget per generated turn."
CHAT_HELP = "Use the tokenizer's chat template."
MAX_CONTEXT_HELP = ("Context tokens; the oldest observations are elided to fit (default: the student's training "
                    "seq-len; for openai:MODEL the server's advertised length).")
TOKENIZER_HELP = ("openai:MODEL: the served model's tokenizer (name or path): counts the context tokens (default: "
                  "a safe estimate) and, with --teacher-topk, maps the endpoint's tokens to ids (default smollm2-135m).")
RETRY_HELP = "On resume, keep errored episodes (server down, ...) instead of running them again."
EXEMPLARS_HELP = ("Few-shot exemplars in the system prompt: K (teacher episodes from train; per task type for "
                  "ALFWorld), react or react:KEY (ReAct's prompts), 0 = none. Default: a student's training prompt.")
SUBSET_HELP = "How -n picks tasks: stratified (seeded, balanced by task type) | first (id order)."


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        agent: str = typer.Option(..., "--agent", help="expert | oracle | checkpoint dir | smollm2-135m | openai:MODEL"),
        env: str = typer.Option(..., "--env", help=env_choices()),
        split: Optional[str] = typer.Option(None, "--split", help="Default: " + default_splits_help() + "."),
        n: Optional[int] = typer.Option(None, "-n", help="N tasks of the split (see --subset)."),
        tasks: Optional[str] = typer.Option(None, "--tasks", help="Task ids: a,b,c or @file."),
        seed: int = typer.Option(0, "--seed", help="Env and sampling seed."),
        batch: Optional[int] = typer.Option(None, "--batch", help=BATCH_HELP),
        workers: int = typer.Option(1, "--workers", help="Processes for scripted experts (CPU-bound)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output JSONL (default runs/eval-AGENT-ENV-SPLIT.jsonl)."),
        shard: Optional[str] = typer.Option(None, "--shard", help="Run shard i/n of the task list."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start over instead of resuming."),
        resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
        teacher: Optional[Path] = typer.Option(None, "--teacher", help="Teacher JSONL: adds CoT match to the table."),
        temperature: float = typer.Option(0.0, "--temperature", rich_help_panel=DECODING_PANEL, help="0 = greedy."),
        top_p: float = typer.Option(1.0, "--top-p", rich_help_panel=DECODING_PANEL, help=TOP_P_HELP),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", rich_help_panel=DECODING_PANEL, help=MNT_HELP),
        chat: bool = typer.Option(True, "--chat/--no-chat", rich_help_panel=DECODING_PANEL, help=CHAT_HELP),
        max_context: Optional[int] = typer.Option(None, "--max-context", rich_help_panel=DECODING_PANEL,
                                                  help=MAX_CONTEXT_HELP),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", rich_help_panel=DECODING_PANEL, help=TOKENIZER_HELP),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Env step cap (default per env)."),
        server_url: Optional[str] = typer.Option(None, "--server-url", help="WebShop server (default: start one)."),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint for openai:MODEL."),
        api: str = typer.Option("chat", "--api", help="chat | completions (openai:MODEL)."),
        subset: str = typer.Option("stratified", "--subset", help=SUBSET_HELP),
        subset_seed: int = typer.Option(0, "--subset-seed", help="Seed of the stratified subset."),
        prefix_cache: bool = typer.Option(True, "--prefix-cache/--no-prefix-cache", rich_help_panel=DECODING_PANEL,
                                          help="Reuse each episode's KV cache across turns (HF agents; same outputs)."),
        exemplars: Optional[str] = typer.Option(None, "--exemplars", rich_help_panel=DECODING_PANEL,
                                                help=EXEMPLARS_HELP),
        no_retry_errors: bool = typer.Option(False, "--no-retry-errors", help=RETRY_HELP),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ):
        """Evaluate an agent on an env: record trajectories (resumable) and print TSR/ARL/CoT/latency."""
        _resume_or_overwrite(resume, overwrite)
        run_command(agent, env, split, n, teacher, tasks=tasks, seed=seed, batch=batch, workers=workers, out=out,
                    shard=shard, overwrite=overwrite, temperature=temperature, top_p=top_p,
                    max_new_tokens=max_new_tokens, chat=chat, max_steps=max_steps, max_context=max_context,
                    tokenizer=tokenizer, server_url=server_url, base_url=base_url, api=api, progress=not no_progress,
                    subset=subset, subset_seed=subset_seed, prefix_cache=prefix_cache, exemplars=exemplars, retry_errors=not no_retry_errors)

    @app.command("collect")
    def collect_cmd(
        teacher: str = typer.Option(..., "--teacher", help="expert | oracle | checkpoint | openai:MODEL"),
        env: str = typer.Option(..., "--env", help=env_choices()),
        split: str = typer.Option("train", "--split", help="Task split to collect on."),
        samples: int = typer.Option(1, "--samples", help="Samples per task (use with --temperature)."),
        n: Optional[int] = typer.Option(None, "-n", help="N tasks (see --subset)."),
        tasks: Optional[str] = typer.Option(None, "--tasks", help="Task ids: a,b,c or @file."),
        seed: int = typer.Option(0, "--seed", help="Env and sampling seed (sample k uses seed + k)."),
        batch: Optional[int] = typer.Option(None, "--batch", help=BATCH_HELP),
        workers: int = typer.Option(1, "--workers", help="Processes for scripted experts."),
        out: Optional[Path] = typer.Option(None, "--out", help="Default runs/collect-TEACHER-ENV-SPLIT.jsonl."),
        shard: Optional[str] = typer.Option(None, "--shard", help="Run shard i/n of the task list."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start over instead of resuming."),
        resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
        temperature: float = typer.Option(0.0, "--temperature", rich_help_panel=DECODING_PANEL, help="0 = greedy."),
        top_p: float = typer.Option(1.0, "--top-p", rich_help_panel=DECODING_PANEL, help=TOP_P_HELP),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", rich_help_panel=DECODING_PANEL, help=MNT_HELP),
        chat: bool = typer.Option(True, "--chat/--no-chat", rich_help_panel=DECODING_PANEL, help=CHAT_HELP),
        max_context: Optional[int] = typer.Option(None, "--max-context", rich_help_panel=DECODING_PANEL,
                                                  help=MAX_CONTEXT_HELP),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", rich_help_panel=DECODING_PANEL, help=TOKENIZER_HELP),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Env step cap (default per env)."),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint for openai:MODEL."),
        api: str = typer.Option("chat", "--api", help="chat | completions (openai:MODEL)."),
        server_url: Optional[str] = typer.Option(None, "--server-url", help="WebShop server (default: start one)."),
        subset: str = typer.Option("stratified", "--subset", help=SUBSET_HELP),
        subset_seed: int = typer.Option(0, "--subset-seed", help="Seed of the stratified subset."),
        prefix_cache: bool = typer.Option(True, "--prefix-cache/--no-prefix-cache", rich_help_panel=DECODING_PANEL,
                                          help="Reuse each episode's KV cache across turns (HF agents; same outputs)."),
        exemplars: Optional[str] = typer.Option(None, "--exemplars", rich_help_panel=DECODING_PANEL,
                                                help=EXEMPLARS_HELP),
        no_retry_errors: bool = typer.Option(False, "--no-retry-errors", help=RETRY_HELP),
        teacher_topk: int = typer.Option(0, "--teacher-topk", help="Also write the teacher's top-K log-probs "
                                         "per generated token: OUT.topk.safetensors, for distill --loss kl."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ):
        """Collect a teacher training set (K samples per task) with the same engine as `eval`."""
        _resume_or_overwrite(resume, overwrite)
        run_command(teacher, env, split, n, kind="collect", samples=samples, tasks=tasks, seed=seed, batch=batch,
                    workers=workers, out=out, shard=shard, overwrite=overwrite, temperature=temperature, top_p=top_p,
                    max_new_tokens=max_new_tokens, chat=chat, max_steps=max_steps, max_context=max_context,
                    tokenizer=tokenizer, server_url=server_url, base_url=base_url, api=api, progress=not no_progress,
                    subset=subset, subset_seed=subset_seed, prefix_cache=prefix_cache, exemplars=exemplars, retry_errors=not no_retry_errors, teacher_topk=teacher_topk)


def _resume_or_overwrite(resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise SadEvalError("--resume and --overwrite contradict each other: pick one")
