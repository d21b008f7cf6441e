"""Metrics tables: pandas underneath, rendered as rich, markdown, CSV, JSON or LaTeX.

Rows are runs (methods); columns are (env, metric) pairs, like the paper's Table 3.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from sad_eval.envs.spec import cached_by_registry, env_specs
from sad_eval.errors import SadEvalError
from sad_eval.metrics import Tokenize, summarize, word_tokens
from sad_eval.trajectory import Episode, load_trajectories

FORMATS = ("table", "json", "csv", "md", "latex")

# Column order and display names of the shared metrics; each env's own metrics (`EnvSpec.metrics`,
# e.g. WebShop's score) follow them, and appear only for their env.
SHARED_LABELS = {
    "episodes": "N",
    "tsr": "TSR%",
    "arl": "ARL",
    "cot_match": "CoT%",
    "latency_steps": "Steps",
    "latency_s": "s/ep",
    "invalid_rate": "Inv%",
    "runaway_rate": "Runaway%",
    "no_action_rate": "NoAct%",
    "rejected_rate": "Rej%",
}
# Shown by default (with the envs' own metrics); the rest (errored, cot_pairs, s/step) stay in JSON/CSV.
SHARED_DEFAULT = ("episodes", "tsr", "arl", "cot_match", "latency_steps", "latency_s", "invalid_rate",
                  "runaway_rate", "no_action_rate", "rejected_rate")


@cached_by_registry
def metric_labels() -> dict[str, str]:
    """Every metric's display name, in column order."""
    env_own = {m.key: m.label for s in env_specs() for m in s.metrics}
    return {**SHARED_LABELS, **env_own, "errored": "Err"}


@cached_by_registry
def default_metrics() -> tuple[str, ...]:
    return SHARED_DEFAULT + tuple(m.key for s in env_specs() for m in s.metrics)
COUNT_METRICS = ("episodes", "errored", "cot_pairs")


def run_name(path: str | Path) -> str:
    return Path(path).stem


def _agent_label(episodes: Sequence[Episode]) -> str:
    agents = list(dict.fromkeys(e.agent for e in episodes if e.agent))
    return "+".join(agents) if agents else ""


def _path_suffix(path: Path, k: int) -> str:
    parts = list(path.with_suffix("").parts)
    return "/".join(parts[-k:])


def label_runs(files: Sequence[tuple[Path, list[Episode]]]) -> tuple[dict[str, list[Episode]], dict[str, list[Path]]]:
    """Rows of a comparison, named by the agent that produced each file (its episodes' ``agent``),
    not by file name: the experiment's ``eval/tiny-sad-s0/webshop.jsonl`` and
    ``eval/tiny-token-s0/webshop.jsonl`` are two rows, ``tiny-sad-s0`` and ``tiny-token-s0``.

    Files of one agent on different envs join one row (its columns per env). Files of one agent that
    share an env would overwrite each other's cells, so each of them is named by the shortest tail of
    its path that tells them apart (``a/eval/tiny-sad-s0/webshop``); the same file given twice is refused.
    Returns (label -> episodes, label -> files)."""
    resolved = [p.resolve() for p, _ in files]
    dup = [str(p) for p, r in zip((p for p, _ in files), resolved) if resolved.count(r) > 1]
    if dup:
        raise SadEvalError(f"{dup[0]} is given twice")
    base = [_agent_label(eps) or run_name(p) for p, eps in files]
    labels = list(base)
    for name in dict.fromkeys(base):
        idx = [i for i, b in enumerate(base) if b == name]
        envs = [{e.env for e in files[i][1]} for i in idx]
        if all(not (envs[a] & envs[b]) for a in range(len(idx)) for b in range(a + 1, len(idx))):
            continue  # disjoint envs: one row
        paths = [resolved[i] for i in idx]
        k = 1
        while len({_path_suffix(p, k) for p in paths}) < len(paths):
            k += 1
        for i, p in zip(idx, paths):
            labels[i] = _path_suffix(p, k)
    runs: dict[str, list[Episode]] = {}
    sources: dict[str, list[Path]] = {}
    for label, (p, eps) in zip(labels, files):
        runs.setdefault(label, []).extend(eps)
        sources.setdefault(label, []).append(Path(p))
    return runs, sources


def metrics_by_env(episodes: Sequence[Episode], teacher: Sequence[Episode] | None = None,
                   tokenize: Tokenize = word_tokens, max_new_tokens: int | None = None) -> dict[str, dict[str, float]]:
    """``summarize`` per env present in ``episodes``."""
    envs = sorted({e.env for e in episodes})
    out = {}
    for env in envs:
        mine = [e for e in episodes if e.env == env]
        theirs = [e for e in teacher if e.env == env] if teacher is not None else None
        out[env] = summarize(mine, theirs, tokenize, max_new_tokens)
    return out


def metrics_frame(runs: dict[str, Sequence[Episode]], teacher: Sequence[Episode] | None = None,
                  tokenize: Tokenize = word_tokens, max_new_tokens: int | None = None) -> pd.DataFrame:
    """Rows = runs; columns = MultiIndex (env, metric)."""
    rows = {}
    for name, eps in runs.items():
        flat = {}
        for env, m in metrics_by_env(eps, teacher, tokenize, max_new_tokens).items():
            for k, v in m.items():
                flat[(env, k)] = v
        rows[name] = flat
    df = pd.DataFrame.from_dict(rows, orient="index")
    if df.empty:
        return df
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["env", "metric"])
    order = list(metric_labels())
    cols = sorted(df.columns, key=lambda c: (c[0], order.index(c[1]) if c[1] in order else len(order)))
    return df[cols]


def load_runs(paths: Iterable[str | Path], strict: bool = False) -> dict[str, list[Episode]]:
    """label -> episodes (see `label_runs`)."""
    return load_labelled_runs(paths, strict)[0]


def load_labelled_runs(paths: Iterable[str | Path], strict: bool = False):
    files = []
    for p in paths:
        eps = load_trajectories([p], strict=strict)
        if not eps:
            raise SadEvalError(f"{p}: no readable episodes")
        files.append((Path(p), eps))
    return label_runs(files)


def _fmt(v, metric: str = "") -> str:
    if isinstance(v, float) and math.isnan(v):
        return "–"
    if metric in COUNT_METRICS:
        return str(int(v))
    if isinstance(v, (int, float)):
        return f"{v:.2f}" if metric.startswith("latency_s") else f"{v:.1f}"
    return str(v)


def display_frame(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Formatted strings, flat column names like ``alfworld TSR %``."""
    metrics = default_metrics() if metrics is None else metrics
    keep = [c for c in df.columns if c[1] in metrics]
    out = pd.DataFrame({f"{env} {metric_labels().get(m, m)}": [_fmt(v, m) for v in df[(env, m)]] for env, m in keep},
                       index=df.index)
    return out


def clean_nan(obj):
    """NaN -> None, recursively, so that JSON output is valid JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_nan(v) for v in obj]
    return obj


def to_json(df: pd.DataFrame) -> str:
    """``{run: {env: {metric: value}}}``; NaN becomes null."""
    out: dict = {}
    for run, row in df.iterrows():
        for (env, metric), v in row.items():
            if isinstance(v, float) and math.isnan(v):
                v = None
            elif isinstance(v, float) and v.is_integer() and metric in ("episodes", "errored", "cot_pairs"):
                v = int(v)
            out.setdefault(str(run), {}).setdefault(env, {})[metric] = v
    return json.dumps(out, indent=2)


def render(df: pd.DataFrame, fmt: str = "table", title: str | None = None,
           metrics: Sequence[str] | None = None) -> str | None:
    """Render in a format; ``table`` prints a rich table and returns None."""
    if fmt not in FORMATS:
        raise SadEvalError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "json":
        return to_json(df)
    flat = df.copy()
    flat.columns = [f"{env}/{m}" for env, m in df.columns]
    if fmt == "csv":
        return flat.to_csv(index_label="run")
    shown = display_frame(df, metrics)
    if fmt == "md":
        return shown.to_markdown() if _has_tabulate() else _markdown(shown)
    if fmt == "latex":
        return latex_table(shown, index_name="run")
    print_rich(df, title, metrics)
    return None


def print_rich(df: pd.DataFrame, title: str | None = None, metrics: Sequence[str] | None = None) -> None:
    """One rich table per env with metrics as rows and runs as columns: fits an 80-column terminal
    (the wide Table-3 layout is kept for md/CSV/LaTeX)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    shown = default_metrics() if metrics is None else metrics
    for env in dict.fromkeys(c[0] for c in df.columns):
        cols = [c for c in df.columns if c[0] == env and (c[1] in shown or (c[1] == "errored" and (df[c] > 0).any()))]
        table = Table(title=f"{title} — {env}" if title else env, box=box.SIMPLE_HEAD)
        table.add_column("metric", style="bold", no_wrap=True)
        for run in df.index:
            table.add_column(str(run), justify="right", overflow="fold")
        for col in cols:
            table.add_row(metric_labels().get(col[1], col[1]), *(_fmt(v, col[1]) for v in df[col].tolist()))
        console.print(table)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


def _markdown(df: pd.DataFrame) -> str:
    header = "| run | " + " | ".join(df.columns) + " |"
    sep = "|---|" + "|".join("---:" for _ in df.columns) + "|"
    rows = [f"| {run} | " + " | ".join(row.tolist()) + " |" for run, row in df.iterrows()]
    return "\n".join([header, sep, *rows]) + "\n"


# LaTeX specials; `%` would start a comment and `_`/`&` break the table
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "–": "--", "−": "$-$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    for sym, tex in _LATEX_SYMBOLS.items():
        out = out.replace(sym, tex)
    return out


def latex_table(table: pd.DataFrame, index_name: str = "") -> str:
    """A booktabs tabular with one ``\\multicolumn`` header per env: columns named ``"ENV LABEL"``
    are grouped by ENV (the text before the first space), LABEL below it; every cell escaped."""
    groups: list[tuple[str, list[str]]] = []
    for col in table.columns:
        env, _, label = str(col).partition(" ")
        if not label:
            env, label = "", env
        if groups and groups[-1][0] == env:
            groups[-1][1].append(label)
        else:
            groups.append((env, [label]))
    ncols = sum(len(g[1]) for g in groups)
    lines = [r"\begin{tabular}{l" + "r" * ncols + "}", r"\toprule"]
    head, rules, col = [latex_escape(index_name)], [], 2
    for env, labels in groups:
        head.append(rf"\multicolumn{{{len(labels)}}}{{c}}{{{latex_escape(env)}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + len(labels) - 1}}}")
        col += len(labels)
    lines += [" & ".join(head) + r" \\", " ".join(rules),
              " & ".join([""] + [latex_escape(lab) for _, labels in groups for lab in labels]) + r" \\", r"\midrule"]
    for idx, row in table.iterrows():
        lines.append(" & ".join([latex_escape(idx)] + [latex_escape(v) for v in row.tolist()]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)
