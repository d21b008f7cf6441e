"""`sad-eval eval`, `sad-eval collect`, and the bare form `sad-eval --agent A --env E`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sad_eval.errors import SadEvalError


def _task_list(tasks: Optional[str]) -> list[str] | None:
    """`--tasks a,b,c` or `--tasks @file` (one id per line)."""
    if not tasks:
        return None
    if tasks.startswith("@"):
        path = Path(tasks[1:])
        if not path.is_file():
            raise SadEvalError(f"task list file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise SadEvalError(f"task list {path} is not UTF-8 text (byte {e.start}); "
                               "expected one task id per line") from None
        if "\x00" in text:
            raise SadEvalError(f"task list {path} is a binary file; expected one task id per line")
        ids = [line.strip() for line in text.splitlines() if line.strip()]
        if not ids:
            raise SadEvalError(f"task list {path} names no task ids")
        return ids
    ids = [t.strip() for t in tasks.split(",") if t.strip()]
    if not ids:
        raise SadEvalError(f"--tasks {tasks!r} names no task ids")
    return ids


def check_settings(n: Optional[int], temperature: float, top_p: float, max_new_tokens: int,
                   max_steps: Optional[int], max_context: Optional[int], base_url: Optional[str]) -> None:
    """Values that would run something other than what was asked (``-n 0`` used to run the whole
    split, ``-n -1`` all but one task) are refused with one line."""
    if n is not None and n < 1:
        raise SadEvalError(f"-n must be at least 1 (got {n}); leave it out to run the whole split")
    if not temperature >= 0:
        raise SadEvalError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise SadEvalError(f"--top-p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise SadEvalError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if max_steps is not None and max_steps < 1:
        raise SadEvalError(f"--max-steps must be at least 1, got {max_steps}")
    if max_context is not None and max_context < 1:
        raise SadEvalError(f"--max-context must be at least 1, got {max_context}")
    if base_url:
        from sad_eval.agents.openai_compat import normalize_base_url

        try:
            normalize_base_url(base_url)
        except ValueError:  # urlsplit's own complaints ("Invalid IPv6 URL" for `x[/v1]`)
            raise SadEvalError(f"bad --base-url {base_url!r}: expected http(s)://HOST[:PORT][/v1]") from None


def default_out(agent: str, env: str, split: str, kind: str = "eval") -> Path:
    name = Path(agent.replace("openai:", "openai-").rstrip("/")).name or "agent"
    return Path("runs") / f"{kind}-{name}-{env}-{split}.jsonl"


def run_command(agent: str, env: str, split: Optional[str] = None, n: Optional[int] = None,
                tasks: Optional[str] = None, seed: int = 0, batch: int = 8, workers: int = 1,
                out: Optional[Path] = None, shard: Optional[str] = None, overwrite: bool = False,
                teacher: Optional[Path] = None, temperature: float = 0.0, top_p: float = 1.0,
                max_new_tokens: int = 128, chat: bool = True, max_steps: Optional[int] = None,
                max_context: Optional[int] = None, server_url: Optional[str] = None,
                base_url: Optional[str] = None, api: str = "chat", samples: int = 1, kind: str = "eval",
                progress: bool = True, show_table: bool = True, retry_errors: bool = True,
                subset: str = "stratified", subset_seed: int = 0, prefix_cache: bool = True,
                exemplars: Optional[str] = None, teacher_topk: int = 0, topk_tokenizer: Optional[str] = None) -> Path:
    from sad_eval.agents.hf import DecodingConfig
    from sad_eval.agents.registry import AgentSpec
    from sad_eval.envs import DEFAULT_SPLITS, env_id
    from sad_eval.run import RunConfig, execute, parse_shard

    env_id(env)  # unknown env -> one clear error
    split = split or DEFAULT_SPLITS[env]
    if agent.startswith("openai:") and not base_url:
        raise SadEvalError("--agent openai:MODEL needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    from sad_eval.harness import SUBSETS

    if subset not in SUBSETS:
        raise SadEvalError(f"--subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    if teacher_topk < 0:
        raise SadEvalError("--teacher-topk must be >= 1 (0: none)")
    if batch < 1 or workers < 1 or samples < 1:
        raise SadEvalError("--batch, --workers and --samples must be >= 1")
    check_settings(n, temperature, top_p, max_new_tokens, max_steps, max_context, base_url)
    env_kwargs = {}
    if max_steps:
        env_kwargs["max_steps"] = max_steps
    if server_url:
        if env != "webshop":
            raise SadEvalError("--server-url applies to --env webshop only")
        env_kwargs["server_url"] = server_url
    if agent in ("expert", "oracle"):
        from sad_eval.agents.experts import expert_env_kwargs

        env_kwargs.update(expert_env_kwargs(env))
    if exemplars is not None:
        from sad_eval.agents.exemplars import parse_spec

        if agent in ("expert", "oracle"):
            raise SadEvalError("--exemplars applies to model agents (a checkpoint or openai:MODEL), not scripted ones")
        exemplars = parse_spec(exemplars)
    spec = AgentSpec(agent=agent, env=env, chat=chat, base_url=base_url, api=api, max_context=max_context,
                     prefix_cache=prefix_cache,
                     decoding=DecodingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                             top_p=top_p, seed=seed), exemplars=exemplars,
                     top_logprobs=teacher_topk, tokenizer=topk_tokenizer)
    out = out or default_out(agent, env, split, kind)
    cfg = RunConfig(spec=spec, split=split, out=out, seed=seed, batch=batch, workers=workers, limit=n,
                    tasks=_task_list(tasks), shard=parse_shard(shard), samples=samples, overwrite=overwrite,
                    env_kwargs=env_kwargs, kind=kind, retry_errors=retry_errors, subset=subset,
                    subset_seed=subset_seed)
    new = execute(cfg, progress=progress)
    report_errors(new, out)
    if show_table:
        from sad_eval.reports import tables
        from sad_eval.trajectory import load_trajectories

        eps = load_trajectories([out])
        teach = load_trajectories([teacher]) if teacher else None
        tables.render(tables.metrics_frame({tables.run_name(out): eps}, teach), "table")
        typer.echo(f"trajectories: {out}")
    return out


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
RETRY_HELP = "On resume, keep errored episodes (server down, ...) instead of running them again."
EXEMPLARS_HELP = ("Few-shot exemplars in the system prompt: K (teacher episodes from train; per task type for "
                  "ALFWorld), react or react:KEY (ReAct's prompts), 0 = none. Default: a student's training prompt.")


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        agent: str = typer.Option(..., "--agent", help="expert | oracle | checkpoint dir | smollm2-135m | openai:MODEL"),
        env: str = typer.Option(..., "--env", help="alfworld | webshop | hotpotqa"),
        split: Optional[str] = typer.Option(None, "--split", help="Default: valid_unseen / test / dev500."),
        n: Optional[int] = typer.Option(None, "-n", help="N tasks of the split (see --subset)."),
        tasks: Optional[str] = typer.Option(None, "--tasks", help="Task ids: a,b,c or @file."),
        seed: int = typer.Option(0, "--seed"),
        batch: int = typer.Option(8, "--batch", help="Episodes stepped in lockstep (one generate per turn)."),
        workers: int = typer.Option(1, "--workers", help="Processes for scripted experts (CPU-bound)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output JSONL (default runs/eval-AGENT-ENV-SPLIT.jsonl)."),
        shard: Optional[str] = typer.Option(None, "--shard", help="Run shard i/n of the task list."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start over instead of resuming."),
        teacher: Optional[Path] = typer.Option(None, "--teacher", help="Teacher JSONL: adds CoT match to the table."),
        temperature: float = typer.Option(0.0, "--temperature", rich_help_panel=DECODING_PANEL, help="0 = greedy."),
        top_p: float = typer.Option(1.0, "--top-p", rich_help_panel=DECODING_PANEL),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", rich_help_panel=DECODING_PANEL),
        chat: bool = typer.Option(True, "--chat/--no-chat", rich_help_panel=DECODING_PANEL,
                                  help="Use the tokenizer's chat template."),
        max_context: Optional[int] = typer.Option(None, "--max-context", rich_help_panel=DECODING_PANEL,
                                                  help="Context tokens (default: the student's training seq-len)."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Env step cap (default per env)."),
        server_url: Optional[str] = typer.Option(None, "--server-url", help="WebShop server (default: start one)."),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint for openai:MODEL."),
        api: str = typer.Option("chat", "--api", help="chat | completions (openai:MODEL)."),
        subset: str = typer.Option("stratified", "--subset", help="How -n picks tasks: stratified (seeded, balanced by task type) | first (id order)."),
        subset_seed: int = typer.Option(0, "--subset-seed", help="Seed of the stratified subset."),
        prefix_cache: bool = typer.Option(True, "--prefix-cache/--no-prefix-cache", rich_help_panel=DECODING_PANEL,
                                          help="Reuse each episode's KV cache across turns (HF agents)."),
        exemplars: Optional[str] = typer.Option(None, "--exemplars", rich_help_panel=DECODING_PANEL,
                                                help=EXEMPLARS_HELP),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        no_retry_errors: bool = typer.Option(False, "--no-retry-errors", help=RETRY_HELP),
    ):
        """Evaluate an agent on an env: record trajectories (resumable) and print TSR/ARL/CoT/latency."""
        run_command(agent, env, split, n, tasks, seed, batch, workers, out, shard, overwrite, teacher,
                    temperature, top_p, max_new_tokens, chat, max_steps, max_context, server_url, base_url,
                    api, progress=not no_progress, retry_errors=not no_retry_errors, subset=subset,
                    subset_seed=subset_seed, prefix_cache=prefix_cache, exemplars=exemplars)

    @app.command("collect")
    def collect_cmd(
        teacher: str = typer.Option(..., "--teacher", help="expert | oracle | checkpoint | openai:MODEL"),
        env: str = typer.Option(..., "--env", help="alfworld | webshop | hotpotqa"),
        split: str = typer.Option("train", "--split"),
        samples: int = typer.Option(1, "--samples", help="Samples per task (use with --temperature)."),
        temperature: float = typer.Option(0.0, "--temperature", rich_help_panel=DECODING_PANEL),
        top_p: float = typer.Option(1.0, "--top-p", rich_help_panel=DECODING_PANEL),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", rich_help_panel=DECODING_PANEL),
        max_context: Optional[int] = typer.Option(None, "--max-context", rich_help_panel=DECODING_PANEL,
                                                  help="Context tokens of a checkpoint teacher (default: its own)."),
        n: Optional[int] = typer.Option(None, "-n", help="N tasks (see --subset)."),
        tasks: Optional[str] = typer.Option(None, "--tasks", help="Task ids: a,b,c or @file."),
        seed: int = typer.Option(0, "--seed"),
        batch: int = typer.Option(8, "--batch"),
        workers: int = typer.Option(1, "--workers", help="Processes for scripted experts."),
        out: Optional[Path] = typer.Option(None, "--out", help="Default runs/collect-TEACHER-ENV-SPLIT.jsonl."),
        shard: Optional[str] = typer.Option(None, "--shard"),
        overwrite: bool = typer.Option(False, "--overwrite"),
        base_url: Optional[str] = typer.Option(None, "--base-url"),
        api: str = typer.Option("chat", "--api", help="chat | completions (openai:MODEL)."),
        server_url: Optional[str] = typer.Option(None, "--server-url"),
        subset: str = typer.Option("stratified", "--subset", help="How -n picks tasks: stratified (seeded, balanced by task type) | first (id order)."),
        subset_seed: int = typer.Option(0, "--subset-seed", help="Seed of the stratified subset."),
        prefix_cache: bool = typer.Option(True, "--prefix-cache/--no-prefix-cache", rich_help_panel=DECODING_PANEL,
                                          help="Reuse each episode's KV cache across turns (HF agents)."),
        exemplars: Optional[str] = typer.Option(None, "--exemplars", rich_help_panel=DECODING_PANEL,
                                                help=EXEMPLARS_HELP),
        teacher_topk: int = typer.Option(0, "--teacher-topk", help="Also write the teacher's top-K log-probs "
                                         "per generated token: OUT.topk.safetensors, for distill --loss kl."),
        topk_tokenizer: Optional[str] = typer.Option(None, "--topk-tokenizer", help="Student tokenizer an "
                                                     "endpoint's tokens are mapped to (default smollm2-135m)."),
        no_progress: bool = typer.Option(False, "--no-progress"),
        no_retry_errors: bool = typer.Option(False, "--no-retry-errors", help=RETRY_HELP),
    ):
        """Collect a teacher training set (K samples per task) with the same engine as `eval`."""
        run_command(teacher, env, split, n, tasks, seed, batch, workers, out, shard, overwrite, None,
                    temperature, top_p, max_new_tokens, True, None, max_context, server_url, base_url, api,
                    samples=samples, kind="collect", progress=not no_progress, retry_errors=not no_retry_errors,
                    subset=subset, subset_seed=subset_seed, prefix_cache=prefix_cache, exemplars=exemplars,
                    teacher_topk=teacher_topk, topk_tokenizer=topk_tokenizer)
