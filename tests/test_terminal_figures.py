"""Terminal output at 80 columns (nothing cut, an ETA) and Figure 2 (panels per metric × env, a
teacher line, offset methods, intervals clipped to the metric's range, a single student size)."""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console

from sad_eval.trajectory import Episode


def test_progress_fits_80_columns_with_eta():
    from sad_eval.run import _Progress

    c = Console(width=80, file=io.StringIO())
    p = _Progress(134, 0, "eval some-rather-long-student-name-s0 on webshop/test", console=c)
    for i in range(7):
        p.advance(Episode(env="webshop", split="test", task_id=str(i), agent="a", success=i % 2 == 0))
    out = Console(width=80, file=io.StringIO(), record=True)
    out.print(p.progress.get_renderable())
    line = out.export_text().rstrip("\n")
    assert len(line) <= 80 and "7/134" in line and "TSR 57.1%" in line and " ep/min" in line and "ETA" in line
    assert line.split("TSR", 1)[1].count("…") == 0  # only the description may be shortened


def _report_dir(tmp_path):
    rep = tmp_path / "report"
    rep.mkdir()
    pd.DataFrame({"webshop ΔTSR": ["311.22 ± 12.34"], "webshop ΔARL": ["-82.57 ± 140.10"],
                  "webshop ΔCoT": ["-12.30 ± 4.00"], "webshop ΔLat.": ["1.25 ± 0.50"],
                  "webshop ΔInv": ["10.0 ± 1.0"], "webshop ΔNoAct": ["3.0 ± 1.0"], "webshop ΔRej": ["2.0 ± 2.0"],
                  "webshop seeds": ["3"]}, index=["sad − token (small)"]).to_csv(rep / "paired.csv")
    return tmp_path


def test_report_tables_wrap_instead_of_truncating(tmp_path, monkeypatch):
    from sad_eval.reports import experiment_report

    root = _report_dir(tmp_path)
    buf = io.StringIO()
    monkeypatch.setattr("rich.console.Console", lambda *a, **k: Console(width=80, file=buf))
    experiment_report.print_report(root)
    text = buf.getvalue()
    assert "…" not in text
    for number in ("311.22", "-82.57", "140.10", "12.34"):
        assert number in text


def _long_df(sizes):
    rows = []
    for s_i, (student, params) in enumerate(sizes.items()):
        for seed in range(3):
            for method, tsr in (("sad", 2.0), ("token", 1.0)):
                for env in ("alfworld", "webshop"):
                    rows.append({"row": f"{method} ({student})", "method": method, "student": student, "seed": seed,
                                 "env": env, "tsr": [0.0, 0.0, 6.0][seed] * tsr, "arl": [5.0, 400.0, 10.0][seed],
                                 "cot_match": 1.0, "latency_steps": 10.0 + seed})
    for env in ("alfworld", "webshop"):
        rows.append({"row": "teacher", "method": "teacher", "student": "teacher", "seed": 0, "env": env,
                     "tsr": 97.8, "arl": 12.0, "cot_match": 100.0, "latency_steps": 8.0})
    return pd.DataFrame(rows)


def test_figure2_panels_teacher_line_offsets_and_clipped_intervals(tmp_path):
    from sad_eval.reports.experiment_report import figure2, figure2_figure

    counts = {"tiny": 4_000_000, "small": 30_000_000}
    fig = figure2_figure(_long_df(counts), counts)
    assert len(fig.axes) == 4 * 2  # metric × env
    assert [fig.axes[i].get_title() for i in (0, 1)] == ["alfworld", "webshop"]
    for ax in fig.axes:
        lines = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
        assert lines, "teacher reference line"
        xs = sorted(x for l in ax.get_lines() if l.get_marker() in ("o", "s") for x in l.get_xdata())
        assert len(set(xs)) == len(xs)  # sad and token markers do not sit on one another
        for coll in ax.collections:  # error bars: never outside the metric's range
            for seg in coll.get_segments():
                assert seg[:, 1].min() >= -1e-9
        if ax.get_ylabel().startswith(("TSR", "CoT")) or "TSR" in ax.get_ylabel():
            for coll in ax.collections:
                for seg in coll.get_segments():
                    assert seg[:, 1].max() <= 100 + 1e-9
    # one student size: methods side by side, still a valid figure
    one = {"tiny": 4_000_000}
    fig1 = figure2_figure(_long_df(one), one)
    assert [t.get_text() for t in fig1.axes[-1].get_xticklabels()] == ["sad", "token"]
    out = figure2(_long_df(counts), counts, tmp_path / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
