"""`sad-eval report A B`: row naming and collisions, LaTeX, N and env scores per cell."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd

from sad_eval.trajectory import Episode, Step, TrajectoryWriter


def run(*args):
    return subprocess.run([sys.executable, "-m", "sad_eval.cli", *args], capture_output=True, text=True)


def write_run(path, agent, env, successes):
    path.parent.mkdir(parents=True, exist_ok=True)
    with TrajectoryWriter(path) as w:
        for i, ok in enumerate(successes):
            w.write(Episode(env=env, split="test", task_id=f"t{i}", agent=agent, success=ok, score=0.5 if ok else 0.0,
                            steps=[Step("I look for it.", "search[x]", "page"), Step("Buy it.", "click[Buy Now]", "")]))
    return path


def test_experiment_layout_gives_one_row_per_run_named_by_agent(tmp_path):
    # the experiment's own layout: same file name in two run folders (was one row, the second run's numbers)
    a = write_run(tmp_path / "eval/tiny-sad-s0/webshop.jsonl", "tiny-sad-s0", "webshop", [True, True])
    b = write_run(tmp_path / "eval/tiny-token-s0/webshop.jsonl", "tiny-token-s0", "webshop", [False, True])
    r = run("report", str(a), str(b), "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"tiny-sad-s0", "tiny-token-s0"}
    assert out["tiny-sad-s0"]["webshop"]["tsr"] == 100.0 and out["tiny-token-s0"]["webshop"]["tsr"] == 50.0
    assert f"row tiny-sad-s0: {a}" in r.stderr  # says how rows are named


def test_one_agent_on_two_envs_is_one_row_and_a_collision_is_told_apart(tmp_path):
    w = write_run(tmp_path / "x/webshop.jsonl", "student", "webshop", [True])
    h = write_run(tmp_path / "x/hotpotqa.jsonl", "student", "hotpotqa", [False])
    out = json.loads(run("report", str(w), str(h), "--format", "json").stdout)
    assert list(out) == ["student"] and set(out["student"]) == {"webshop", "hotpotqa"}
    # the same agent twice on one env (two experiments): named by the shortest distinguishing path
    a = write_run(tmp_path / "runA/eval/student/webshop.jsonl", "student", "webshop", [True])
    b = write_run(tmp_path / "runB/eval/student/webshop.jsonl", "student", "webshop", [False])
    r = run("report", str(a), str(b), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) == {"runA/eval/student/webshop", "runB/eval/student/webshop"}
    r = run("report", str(a), str(a))
    assert r.returncode == 2 and "given twice" in r.stderr and "Traceback" not in r.stderr


def test_latex_is_escaped_and_grouped_per_env(tmp_path):
    w = write_run(tmp_path / "a/webshop.jsonl", "my_student", "webshop", [True, False])
    h = write_run(tmp_path / "a/hotpotqa.jsonl", "my_student", "hotpotqa", [True])
    r = run("report", str(w), str(h), "--format", "latex")
    assert r.returncode == 0, r.stderr
    tex = r.stdout
    assert r"TSR\%" in tex and r"my\_student" in tex
    assert not re.search(r"(?<!\\)%", tex)  # no bare % (it would start a comment)
    assert re.search(r"\\multicolumn\{\d+\}\{c\}\{hotpotqa\}", tex) and r"\multicolumn" in tex.split("webshop")[0]
    header = next(line for line in tex.splitlines() if "multicolumn" in line)
    n_cols = re.match(r"\\begin\{tabular\}\{l(r+)\}", tex).group(1).count("r")
    spans = sum(int(x) for x in re.findall(r"\\multicolumn\{(\d+)\}", header))
    assert spans == n_cols  # every column under its env
    # N per cell and the env scores are shown
    assert " N " in tex and "Score" in tex and "EM" in tex and "F1" in tex


def test_experiment_tables_show_n_and_env_scores():
    from sad_eval.reports.experiment_report import aggregate, display, latex_table

    rows = []
    for seed, (tsr, score) in enumerate([(50.0, 60.0), (70.0, 80.0)]):
        rows.append({"row": "sad (tiny)", "method": "sad", "student": "tiny", "seed": seed, "env": "webshop",
                     "tsr": tsr, "arl": 10.0, "cot_match": 5.0, "latency_steps": 3.0, "webshop_score": score})
        rows.append({"row": "sad (tiny)", "method": "sad", "student": "tiny", "seed": seed, "env": "alfworld",
                     "tsr": tsr, "arl": 10.0, "cot_match": 5.0, "latency_steps": 3.0})
    t3 = display(aggregate(pd.DataFrame(rows)), ["alfworld", "webshop"])
    assert t3.at["sad (tiny)", "webshop N"] == "2" and t3.at["sad (tiny)", "alfworld N"] == "2"
    assert t3.at["sad (tiny)", "webshop Score"].startswith("70.0 ±")
    assert "alfworld Score" not in t3.columns  # an env score only under its env
    tex = latex_table(t3)
    assert r"$\pm$" in tex and r"\multicolumn{5}{c}{alfworld}" in tex


def test_paired_by_task_differences_are_task_means_with_intervals_and_a_sign_test():
    from sad_eval.reports.experiment_report import paired_by_task, sign_test_p
    from sad_eval.trajectory import Episode

    def run(successes, seed):
        return [Episode(env="webshop", split="test", task_id=f"t{i}", agent="a", seed=seed, success=bool(ok),
                        score=float(ok)) for i, ok in enumerate(successes)]

    # seed 0: sad solves t0-t5, token t2-t7 (t0,t1 wins; t6,t7 losses); seed 1: both solve t0-t3
    runs = {("s", "sad", 0, "webshop"): run([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], 0),
            ("s", "token", 0, "webshop"): run([0, 0, 1, 1, 1, 1, 1, 1, 0, 0], 0),
            ("s", "sad", 1, "webshop"): run([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], 1),
            ("s", "token", 1, "webshop"): run([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], 1),
            ("s", "sad", 2, "webshop"): run([1] * 10, 2)}  # no token run: not paired
    table = paired_by_task(runs, ["webshop"])
    row = table.loc["sad − token (s)"]
    # per-task means over 2 seeds: +50, +50, 0 x4, -50, -50, 0, 0 -> mean 0, sd 33.3, t(9)=2.262 -> 23.8
    assert row["webshop Δsuccess"] == "0.0 ± 23.8"
    assert row["webshop wins / losses"] == "2 / 2" and row["webshop tasks × seeds"] == "10 × 2"
    assert row["webshop p"] == f"{sign_test_p(2, 2):.2g}" == "1"
    assert sign_test_p(6, 0) == 2 / 64
