"""Reports of an experiment run directory: the paper's Table 3 and Table 5 (mean ± 95% CI over seeds),
Figure 2 (metrics vs student size), Figure 8 (span-length distributions), Figure 7 (mask overlay HTML),
tied together in report.md."""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd

from sad_eval.envs.spec import env_specs
from sad_eval.errors import SadEvalError
from sad_eval.metrics import summarize
from sad_eval.reports.tables import latex_table
from sad_eval.trajectory import Episode, load_trajectories

TABLE_METRICS = ("tsr", "arl", "cot_match", "latency_steps")
SHARED_LABELS = {"tsr": "TSR", "arl": "ARL", "cot_match": "CoT", "latency_steps": "Lat.", "invalid_rate": "Inv",
                 "no_action_rate": "NoAct", "rejected_rate": "Rej"}


def env_scores() -> tuple[str, ...]:
    """Tables 3 and 5 also show each env's own score where the env declares one (`EnvSpec.metrics`:
    WebShop reward, HotPotQA EM/F1)."""
    return tuple(m.key for s in env_specs() for m in s.metrics)


def label(metric: str) -> str:
    for s in env_specs():
        for m in s.metrics:
            if m.key == metric:
                return m.short_label
    return SHARED_LABELS.get(metric, metric)

# the paired table adds the invalid-action rate: it still separates students that never succeed
PAIRED_METRICS = TABLE_METRICS + ("invalid_rate", "no_action_rate", "rejected_rate")
# two-sided 95% t quantiles by degrees of freedom (n - 1); beyond 30 the normal 1.96
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    keys = [k for k in sorted(T975) if k <= df]
    return T975[keys[-1]] if keys else float("nan") if df < 1 else 1.96


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% t-interval (NaN half-width for one value)."""
    vals = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan")
    m = statistics.fmean(vals)
    if len(vals) < 2:
        return m, float("nan")
    return m, t975(len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))


def _load(path: Path) -> list[Episode]:
    return load_trajectories([path]) if path.is_file() else []


def results(root: Path, cfg, runs: dict | None = None) -> pd.DataFrame:
    """Long table: one row per (row label, method, student, seed, env) with all metrics.
    `runs`: the run directory's `eval_runs`, when already loaded."""
    from sad_eval.layout import teacher_file

    rows: list[dict[str, Any]] = []
    teachers = {p.name: _load(teacher_file(root, p.name, "eval")) for p in cfg.envs}
    for p in cfg.envs:
        if teachers[p.name]:
            rows.append({"row": "teacher", "method": "teacher", "student": "teacher", "seed": 0,
                         "env": p.name, **summarize(teachers[p.name], teachers[p.name])})
    for (student, m, seed, env), eps in (eval_runs(root, cfg) if runs is None else runs).items():
        rows.append({"row": f"{m} ({student})", "method": m, "student": student, "seed": seed,
                     "env": env, **summarize(eps, teachers[env] or None, max_new_tokens=cfg.max_new_tokens)})
    return pd.DataFrame(rows)


def aggregate(df: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """Rows = row labels (in order), columns = (env, metric, 'mean'|'ci'|'n')."""
    out: dict[str, dict[tuple, float]] = {}
    metrics = TABLE_METRICS + env_scores() if metrics is None else metrics
    metrics = [m for m in metrics if m in df.columns]
    for (row, env), g in df.groupby(["row", "env"], sort=False):
        for metric in metrics:
            m, ci = mean_ci(g[metric].astype(float).tolist())
            out.setdefault(row, {})[(env, metric, "mean")] = m
            out.setdefault(row, {})[(env, metric, "ci")] = ci
        out[row][(env, "seeds", "n")] = len(g)
    agg = pd.DataFrame.from_dict(out, orient="index")
    agg.columns = pd.MultiIndex.from_tuples(agg.columns)
    return agg


def _cell(mean: float, ci: float, digits: int = 1) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if math.isnan(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"


def display(agg: pd.DataFrame, envs: list[str], metrics=None) -> pd.DataFrame:
    """Formatted cells; per env first ``N``, the number of runs (seeds) behind each mean, then the
    metrics (an env score only under its own env)."""
    cols = {}
    metrics = TABLE_METRICS + env_scores() if metrics is None else metrics
    for env in envs:
        if (env, "seeds", "n") in agg.columns:
            cols[f"{env} N"] = ["–" if math.isnan(v) else str(int(v)) for v in agg[(env, "seeds", "n")]]
        for metric in metrics:
            if (env, metric, "mean") in agg.columns and agg[(env, metric, "mean")].notna().any():
                cols[f"{env} {label(metric)}"] = [
                    _cell(r[(env, metric, "mean")], r[(env, metric, "ci")], 2 if metric == "latency_steps" else 1)
                    for _, r in agg.iterrows()]
    return pd.DataFrame(cols, index=agg.index)


def paired(df: pd.DataFrame, envs: list[str], a: str = "sad", b: str = "token",
           metrics=PAIRED_METRICS) -> pd.DataFrame:
    """`a` minus `b`, paired by (student, seed, env): mean difference ± 95% t-interval over seeds.
    Pairing removes the seed's shared variance (same data order and init seed for both methods)."""
    rows: dict[str, dict[str, str]] = {}
    metrics = [m for m in metrics if m in df.columns]
    for student in dict.fromkeys(df.loc[df["method"] == a, "student"]):
        cells: dict[str, str] = {}
        for env in envs:
            sel = df[(df["student"] == student) & (df["env"] == env)]
            left = sel[sel["method"] == a].set_index("seed")
            right = sel[sel["method"] == b].set_index("seed")
            seeds = sorted(set(left.index) & set(right.index))
            if not seeds:
                continue
            for metric in metrics:
                diffs = [float(left.at[s_, metric]) - float(right.at[s_, metric]) for s_ in seeds]
                m, ci = mean_ci(diffs)
                cells[f"{env} Δ{label(metric)}"] = _cell(m, ci, 2 if metric == "latency_steps" else 1)
            cells[f"{env} seeds"] = str(len(seeds))
        if cells:
            rows[f"{a} − {b} ({student})"] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def eval_runs(root: Path, cfg) -> dict[tuple[str, str, int, str], list[Episode]]:
    """The finished student evaluations of a run directory: (student, method, seed, env) -> episodes."""
    from sad_eval.layout import eval_file, partial_file, student_key

    out = {}
    for s in cfg.students:
        for m in cfg.methods:
            for seed in cfg.seeds:
                for p in cfg.envs:
                    key = student_key(s, m, seed)
                    # an interrupted eval is left out: a partial task set would bias the means
                    if not partial_file(root, f"eval-{key}-{p.name}").is_file():
                        eps = _load(eval_file(root, key, p.name))
                        if eps:
                            out[(s.name, m, seed, p.name)] = eps
    return out


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test (McNemar's exact test on the discordant pairs)."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def paired_by_task(runs: dict[tuple[str, str, int, str], list[Episode]], envs: list[str], a: str = "sad",
                   b: str = "token") -> pd.DataFrame:
    """`a` minus `b` on the same eval tasks. Per task, the difference of the two methods' success
    (and env score) averaged over the seeds both were evaluated with; mean ± 95% t-interval over
    tasks, the unit an eval set samples. So even one seed gives an interval (two students on the
    same 50 tasks), and more seeds narrow it. wins / losses count the discordant (task, seed)
    pairs (solved by `a` only / by `b` only), and p is the exact two-sided sign test on them
    (McNemar)."""
    rows: dict[str, dict[str, str]] = {}
    for student in dict.fromkeys(k[0] for k in runs if k[1] == a):
        cells: dict[str, str] = {}
        for env in envs:
            seeds = sorted({k[2] for k in runs if k[0] == student and k[3] == env and k[1] == a}
                           & {k[2] for k in runs if k[0] == student and k[3] == env and k[1] == b})
            per_task: dict[str, list[tuple[float, float]]] = {}
            wins = losses = 0
            for seed in seeds:
                left = {e.task_id: e for e in runs[(student, a, seed, env)]}
                right = {e.task_id: e for e in runs[(student, b, seed, env)]}
                for t in sorted(set(left) & set(right)):
                    la, rb = left[t], right[t]
                    per_task.setdefault(t, []).append((float(la.success) - float(rb.success),
                                                       float(la.score) - float(rb.score)))
                    wins += la.success and not rb.success
                    losses += rb.success and not la.success
            if not per_task:
                continue
            for i, name in ((0, "Δsuccess"), (1, "Δscore")):
                m, ci = mean_ci([100 * statistics.fmean(d[i] for d in ds) for ds in per_task.values()])
                cells[f"{env} {name}"] = _cell(m, ci)
            cells[f"{env} wins / losses"] = f"{wins} / {losses}"
            cells[f"{env} p"] = f"{sign_test_p(wins, losses):.2g}"
            cells[f"{env} tasks × seeds"] = f"{len(per_task)} × {len(seeds)}"
        if cells:
            rows[f"{a} − {b} ({student})"] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def to_markdown(table: pd.DataFrame) -> str:
    header = "| | " + " | ".join(table.columns) + " |"
    sep = "|---|" + "|".join("---:" for _ in table.columns) + "|"
    body = [f"| {idx} | " + " | ".join(map(str, row)) + " |" for idx, row in table.iterrows()]
    return "\n".join([header, sep, *body]) + "\n"


def _param_counts(root: Path, cfg) -> dict[str, int]:
    """Student parameter counts from their checkpoints' configs (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sad_eval.layout import ckpt_dir, student_key

    counts = {}
    for s in cfg.students:
        for m, seed in ((m, seed) for m in cfg.methods for seed in cfg.seeds):
            ck = ckpt_dir(root, student_key(s, m, seed))
            if (ck / "config.json").is_file():
                with torch.device("meta"):
                    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(ck))
                counts[s.name] = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
                break
    return counts


# each metric's possible range: a 95% interval is drawn clipped to it (a TSR below 0% does not exist)
METRIC_RANGE = {"tsr": (0.0, 100.0), "cot_match": (0.0, 100.0), "arl": (0.0, math.inf),
                "latency_steps": (0.0, math.inf)}
METRIC_TITLES = {"tsr": "TSR (%)", "arl": "ARL (words)", "cot_match": "CoT match (%)",
                 "latency_steps": "Latency (steps/ep.)"}
METHOD_STYLE = {"sad": ("tab:blue", "o", 0.94), "token": ("tab:orange", "s", 1.06)}  # colour, marker, x offset


def _clipped_yerr(ys, cis, metric: str) -> list[list[float]]:
    lo, hi = METRIC_RANGE.get(metric, (-math.inf, math.inf))
    down = [0.0 if math.isnan(c) else y - max(lo, y - c) for y, c in zip(ys, cis)]
    up = [0.0 if math.isnan(c) else min(hi, y + c) - y for y, c in zip(ys, cis)]
    return [down, up]


def figure2_figure(df: pd.DataFrame, counts: dict[str, int]):
    """The figure: one panel per (metric, env); sad vs token against student size, each method's
    markers offset so they do not hide each other, the teacher as a dashed reference line, and
    95% intervals clipped to the metric's range. With one student size the x axis is the method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sub = df[df["method"].isin(["sad", "token"])]
    if sub.empty or not counts:
        return None
    envs = list(dict.fromkeys(sub["env"]))
    sizes = sorted({counts[s] / 1e6 for s in sub["student"].unique() if s in counts})
    one_size = len(sizes) == 1
    fig, axes = plt.subplots(len(TABLE_METRICS), len(envs), figsize=(3.3 * len(envs) + 0.6, 2.4 * len(TABLE_METRICS)),
                             squeeze=False, sharex=True)
    teacher = df[df["method"] == "teacher"]
    for r, metric in enumerate(TABLE_METRICS):
        for c, env in enumerate(envs):
            ax = axes[r][c]
            for k, method in enumerate(("sad", "token")):
                g = sub[(sub["method"] == method) & (sub["env"] == env)]
                pts = sorted((counts[s] / 1e6, *mean_ci(gg[metric].astype(float).tolist()))
                             for s, gg in g.groupby("student") if s in counts)
                if not pts:
                    continue
                xs, ys, cis = zip(*pts)
                color, marker, offset = METHOD_STYLE[method]
                xs = [k] * len(xs) if one_size else [x * offset for x in xs]
                ax.errorbar(xs, ys, yerr=_clipped_yerr(ys, cis, metric), fmt=marker + ("" if one_size else "-"),
                            color=color, label=method, capsize=3, markersize=5)
            t = teacher[teacher["env"] == env]
            if not t.empty and metric in t:
                ax.axhline(float(t[metric].astype(float).mean()), color="0.35", ls="--", lw=1, label="teacher")
            lo, hi = METRIC_RANGE.get(metric, (-math.inf, math.inf))
            if hi == 100.0:  # percentages: the full scale, so an all-zero TSR reads as 0 of 100
                ax.set_ylim(-3, 103)
            else:
                ax.set_ylim(bottom=lo - 0.03 * max(1.0, ax.get_ylim()[1]))
            if one_size:
                ax.set_xticks([0, 1], ["sad", "token"])
                ax.set_xlim(-0.6, 1.6)
            else:
                ax.set_xscale("log")
                # ticks at the students' sizes only: log-axis minor labels collide over a narrow range
                ax.set_xticks(sizes, [f"{x:.0f}M" if x >= 10 else f"{x:.1f}M" for x in sizes])
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            if r == 0:
                ax.set_title(env)
            if c == 0:
                ax.set_ylabel(METRIC_TITLES[metric])
            if r == len(TABLE_METRICS) - 1:
                ax.set_xlabel(f"method (student {sizes[0]:.1f}M)" if one_size else "student parameters")
            ax.grid(alpha=0.3)
    handles, labels = {}, {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle("SAD vs token-level distillation by student size (cf. paper Fig. 2); mean ± 95% CI over seeds",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    return fig


def figure2(df: pd.DataFrame, counts: dict[str, int], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    fig = figure2_figure(df, counts)
    if fig is None:
        return None
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def span_lengths(episodes: list[Episode]) -> tuple[list[int], list[int]]:
    """Word counts of every REASON and ACT span body (Figure 8)."""
    from sad_eval.metrics import word_tokens
    from sad_eval.segment import REASON, format_turn, segment

    reason, act = [], []
    for ep in episodes:
        for s in ep.steps:
            text = format_turn(ep.env, s.reasoning, s.action)
            for sp in segment(text, ep.env):
                (reason if sp.kind == REASON else act).append(len(word_tokens(sp.body(text))))
    return reason, act


def figure8(root: Path, envs: list[str], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {env: span_lengths(_load(root / "teacher" / f"{env}-train.jsonl")) for env in envs}
    data = {k: v for k, v in data.items() if v[0] or v[1]}
    if not data:
        return None
    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 3.4), squeeze=False)
    for ax, (env, (reason, act)) in zip(axes[0], data.items()):
        top = max(reason + act + [1])
        bins = range(0, top + 2, max(1, top // 30))
        ax.hist(reason, bins=bins, alpha=0.6, color="tab:blue", label=f"REASON (n={len(reason)})")
        ax.hist(act, bins=bins, alpha=0.6, color="tab:red", label=f"ACT (n={len(act)})")
        ax.set_title(env)
        ax.set_xlabel("span length (words)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("spans")
    fig.suptitle("Teacher span-length distributions (cf. paper Fig. 8)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def masks_page(root: Path, envs: list[str], out: Path, per_env: int = 2, seed: int = 0) -> Path | None:
    """Figure 7: tokens of sampled teacher trajectories coloured by span (SmolLM2 tokenizer)."""
    from sad_eval.models import load_tokenizer
    from sad_eval.reports.masks_html import html_page, masks_to_html_block
    from sad_eval.segment import linearize, segment, token_masks

    tok = load_tokenizer()
    blocks = []
    rng = random.Random(seed)
    for env in envs:
        eps = [e for e in _load(root / "teacher" / f"{env}-train.jsonl") if e.success]
        for ep in rng.sample(eps, min(per_env, len(eps))):
            text = linearize(ep.steps, env)
            blocks.append(masks_to_html_block(f"{env} · {ep.task_id}", text, token_masks(text, segment(text, env), tok)))
    if not blocks:
        return None
    out.write_text(html_page(blocks, "Span masks of teacher trajectories (cf. paper Fig. 7)"))
    return out


KEY = ["method", "student", "seed", "env"]


def require_results_files(paths) -> None:
    """Fail early (before hours of work) when a file given to --merge is not there."""
    missing = [str(m) for m in paths if not Path(m).is_file()]
    if missing:
        raise SadEvalError(f"--merge: no such results file {', '.join(missing)}")


# report/episodes.csv: one row per student episode, so that the paired-by-task table of a study
# sharded over sessions or machines can pair episodes whose checkpoints are gone
EPISODE_COLUMNS = ["student", "method", "seed", "env", "task_id", "success", "score", "steps"]


def episode_rows(runs: dict[tuple[str, str, int, str], list]) -> pd.DataFrame:
    rows = [{"student": st, "method": m, "seed": seed, "env": env, "task_id": e.task_id,
             "success": int(bool(e.success)), "score": float(e.score), "steps": len(e.steps)}
            for (st, m, seed, env), eps in runs.items() for e in eps]
    return pd.DataFrame(rows, columns=EPISODE_COLUMNS)


def _read_shard(path: Path) -> pd.DataFrame:
    """A merged file: another shard's report/results_long.csv (summaries) or report/episodes.csv."""
    what = "results_long.csv or episodes.csv"
    try:
        o = pd.read_csv(path, encoding="utf-8", dtype={"task_id": str})
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise SadEvalError(f"{path}: not a {what} (unreadable as UTF-8 CSV: "
                           f"{str(e).splitlines()[0][:100] or type(e).__name__})") from None
    need = EPISODE_COLUMNS if "task_id" in o.columns else KEY + ["row", *TABLE_METRICS]
    missing = [c for c in need if c not in o.columns]
    if missing:
        raise SadEvalError(f"{path}: not a {what} (no columns {missing})")
    return o


def _in_config(o: pd.DataFrame, cfg) -> pd.DataFrame:
    return o[o["env"].isin([p.name for p in cfg.envs])
             & (o["student"].isin([s.name for s in cfg.students] + ["teacher"]))
             & o["method"].isin(list(cfg.methods) + ["teacher"])]


def merge_episodes(runs: dict, shards: list[pd.DataFrame], cfg) -> dict:
    """`runs` plus the (student, method, seed, env) runs of merged episodes.csv files (read by
    `_read_shard`) this run lacks (this run's own episodes win), as records with the fields the
    paired-by-task table reads."""
    from types import SimpleNamespace

    out = dict(runs)
    for o in shards:
        if "task_id" not in o.columns:
            continue
        for (st, m, seed, env), g in _in_config(o, cfg).groupby(["student", "method", "seed", "env"], sort=False):
            key = (st, m, int(seed), env)
            if key not in out:
                out[key] = [SimpleNamespace(task_id=r.task_id, success=bool(r.success), score=float(r.score))
                            for r in g.itertuples()]
    return out


def merge_results(df: pd.DataFrame, others: list[Path], cfg) -> pd.DataFrame:
    """Add other shards' rows (from their results_long.csv) for (method, student, seed, env) this run
    lacks; rows this run has win. Only the config's students/methods/envs are taken; episodes.csv
    files add episodes (`merge_episodes`), not rows."""
    require_results_files(others)
    return _merge_rows(df, [_read_shard(p) for p in others], cfg)


def _merge_rows(df: pd.DataFrame, shards: list[pd.DataFrame], cfg) -> pd.DataFrame:
    frames = [df] + [_in_config(o, cfg) for o in shards if "task_id" not in o.columns]
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else df
    if merged.empty:
        return merged
    merged = merged.drop_duplicates(subset=KEY, keep="first")
    # table order: teacher, then config order of students, methods, seeds
    order = {("teacher", "teacher"): -1}
    for i, s in enumerate(cfg.students):
        for j, m in enumerate(cfg.methods):
            order[(s.name, m)] = i * 100 + j
    merged = merged.assign(_o=[order.get((s, m), 10**6) for s, m in zip(merged["student"], merged["method"])])
    return merged.sort_values(["_o", "seed"], kind="stable").drop(columns="_o").reset_index(drop=True)


def write_report(root: Path, cfg, merge: list[Path] = ()) -> Path:
    """Write every table and figure into ROOT/report and tie them together in report.md.
    `merge`: other shards' results_long.csv (rows) and episodes.csv (episodes) that join this run's."""
    from sad_eval.provenance import versions

    rep = root / "report"
    rep.mkdir(parents=True, exist_ok=True)
    envs = [p.name for p in cfg.envs]
    runs = eval_runs(root, cfg)
    df = results(root, cfg, runs)
    counts = _param_counts(root, cfg)
    if not df.empty:
        df["params"] = [counts.get(s, float("nan")) for s in df["student"]]
    require_results_files(merge)
    shards = [_read_shard(Path(m)) for m in merge]  # each merged file read once
    df = _merge_rows(df, shards, cfg)
    episode_rows(runs).to_csv(rep / "episodes.csv", index=False)  # this run's own episodes only
    runs = merge_episodes(runs, shards, cfg)
    for s, n in (df.dropna(subset=["params"]).groupby("student")["params"].first().items()
                 if "params" in df else ()):
        counts.setdefault(s, int(n))
    df.to_csv(rep / "results_long.csv", index=False)
    parts = [f"# Experiment `{cfg.name}`\n", f"Generated {time.strftime('%Y-%m-%d %H:%M')}; run directory `{root}`.\n"]
    if df.empty:
        (rep / "report.md").write_text("\n".join(parts + ["No results yet.\n"]))
        return rep / "report.md"
    agg = aggregate(df)
    t3 = display(agg, envs)
    t3.to_csv(rep / "table3.csv")
    (rep / "table3.md").write_text(to_markdown(t3))
    (rep / "table3.tex").write_text(latex_table(t3))
    seeds = len(cfg.seeds)
    parts += ["## Table 3: teacher and students per env\n",
              f"N = runs (seeds) per cell; TSR and CoT in %, ARL in words, latency in steps per episode, the env's "
              f"own scores (WebShop reward ×100, HotPotQA EM/F1); mean ± 95% t-interval over {seeds} seed(s)"
              + (" (one seed: no interval)" if seeds < 2 else "") + ". CoT match pairs each student episode with the "
              "teacher's episode on the same task of the eval split.\n", to_markdown(t3)]
    if {"sad", "token"} <= set(cfg.methods):
        diff = paired(df, envs)
        if not diff.empty:
            diff.to_csv(rep / "paired.csv")
            (rep / "paired.md").write_text(to_markdown(diff))
            parts += ["## SAD − token, paired by seed\n",
                      "Per student and env: the mean over seeds of (sad − token) with a 95% t-interval; an "
                      "interval that contains 0 is no evidence of a difference. ΔInv is the change in the "
                      "share of turns without a parsable action (%; lower is better); ΔNoAct counts only "
                      "those that ended before the token budget (format errors, not runaway loops); ΔRej is the "
                      "change in the share of well-formed actions the env rejected (not grounded in the observations).\n", to_markdown(diff)]
        by_task = pd.concat([paired_by_task(runs, envs, "sad", other)
                             for other in ("token", "no-seg") if other in cfg.methods])
        if not by_task.empty:
            by_task.to_csv(rep / "paired_tasks.csv")
            (rep / "paired_tasks.md").write_text(to_markdown(by_task))
            parts += ["## SAD − baseline, paired by task\n",
                      "The same eval tasks under both methods: per task the difference in success (and the env's "
                      "score, ×100) averaged over the seeds both ran, then mean ± 95% t-interval over tasks, so one "
                      "seed already gives an interval. Wins / losses count the (task, seed) pairs that only SAD / only "
                      "the baseline solved; p is the exact two-sided sign test on them. Episodes of this run "
                      "directory and of merged shards' episodes.csv.\n", to_markdown(by_task)]
    ablation = [m for m in cfg.methods if m not in ("sad", "token")]
    if ablation:
        who = cfg.report.get("ablation_student", cfg.students[0].name)
        sub = df[(df["student"] == who) & (df["method"] != "teacher")]
        t5 = display(aggregate(sub), envs)
        t5.index = [i.split(" (")[0] for i in t5.index]
        (rep / "table5.md").write_text(to_markdown(t5))
        t5.to_csv(rep / "table5.csv")
        parts += [f"## Table 5: ablations (student `{who}`)\n", to_markdown(t5)]
    if merge:
        parts += ["Rows merged from: " + ", ".join(f"`{m}`" for m in merge) + "\n"]
    if counts:
        parts += ["## Students\n", "| student | parameters |\n|---|---:|\n"
                  + "".join(f"| {k} | {v / 1e6:.1f}M |\n" for k, v in counts.items())]
    if figure2(df, counts, rep / "figure2.png"):
        parts += ["## Figure 2: metrics vs student size\n", "![figure 2](figure2.png)\n"]
    if figure8(root, envs, rep / "figure8.png"):
        parts += ["## Figure 8: span lengths\n", "![figure 8](figure8.png)\n"]
    if masks_page(root, envs, rep / "masks.html", int(cfg.report.get("mask_samples", 2))):
        parts += ["## Figure 7: span masks\n", "[masks.html](masks.html): teacher tokens coloured by span "
                  "(blue REASON, red ACT, grey context).\n"]
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").is_file() else {}
    cmds = [f"    {v['command']}" for v in manifest.get("stages", {}).values() if v.get("command")]
    parts += ["## Commands\n", "Each stage, as the equivalent command line:\n", "\n".join(cmds) + "\n",
              "## Versions\n", "\n".join(f"- {k} {v}" for k, v in versions().items()) + "\n"]
    (rep / "report.md").write_text("\n".join(parts))
    return rep / "report.md"


def print_report(root: Path) -> None:
    """Rich tables of a run directory's report (Table 3, and Table 5 if present)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name, title in (("table3.csv", "Table 3"), ("paired.csv", "SAD − token (paired by seed)"),
                        ("table5.csv", "Table 5 (ablations)")):
        path = root / "report" / name
        if not path.is_file():
            continue
        df = pd.read_csv(path, index_col=0, dtype=str).fillna("–")  # cells as written (no 1 -> 1.0)
        for env in dict.fromkeys(c.split(" ")[0] for c in df.columns):
            cols = [c for c in df.columns if c.startswith(env + " ")]
            t = Table(title=f"{title} — {env}")
            t.add_column("", style="bold", overflow="fold")
            for c in cols:  # narrow terminals wrap a cell ("311.2 ±" / "12.3"), never cut it ("311…")
                t.add_column(c.split(" ", 1)[1], justify="right", overflow="fold")
            for idx, row in df[cols].iterrows():
                t.add_row(str(idx), *map(str, row.tolist()))
            console.print(t)
    console.print(f"report: {root / 'report' / 'report.md'}")
