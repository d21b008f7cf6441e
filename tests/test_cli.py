"""The CLI as a user meets it: real subprocesses, exit codes, one-line errors."""

import json
import subprocess
import sys

import pytest


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sad_eval.cli", *args], capture_output=True, text=True, env=env)


def test_metrics_json_keys(sample_path):
    r = run("metrics", str(sample_path), "--teacher", str(sample_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for k in ("episodes", "tsr", "arl", "cot_match", "cot_pairs", "latency_steps", "latency_s"):
        assert k in out
    assert out["episodes"] == 3 and out["cot_pairs"] == 3 and out["cot_match"] == 100.0
    assert out["envs"]["alfworld"]["tsr"] == 50.0
    assert "no_action_rate" not in out


def test_metrics_with_a_token_budget_split_invalid_turns(sample_path):
    r = run("metrics", str(sample_path), "--max-new-tokens", "64", "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["runaway_rate"] + out["no_action_rate"] == pytest.approx(out["invalid_rate"])


def test_report_csv_and_md(sample_path, tmp_path):
    r = run("report", str(sample_path), "--format", "csv")
    assert r.returncode == 0 and "alfworld/tsr" in r.stdout
    out = tmp_path / "r.md"
    r = run("report", str(sample_path), "--format", "md", "--out", str(out))
    assert r.returncode == 0 and "alfworld TSR%" in out.read_text()


@pytest.mark.parametrize("args,needle", [
    (["metrics", "missing.jsonl"], "trajectory file not found"),
    (["metrics", "{sample}", "--format", "yaml"], "unknown format"),
    (["data", "status", "--root", "{tmp}/empty"], "no benchmark data"),
    (["segment", "{sample}", "--rule", "nope"], "unknown segmentation rule"),
])
def test_bad_input_one_line_error(args, needle, sample_path, tmp_path):
    args = [a.format(sample=sample_path, tmp=tmp_path) for a in args]
    r = run(*args)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    (["metrics"], "Missing argument"),
    (["metrics", "{sample}", "--bogus"], "No such option"),
    (["metrics", "{sample}", "--max-new-tokens", "0"], "--max-new-tokens"),
])
def test_usage_errors_print_usage_not_a_traceback(args, needle, sample_path):
    # newer typer raises these from its own copy of click, not from click itself
    r = run(*[a.format(sample=sample_path) for a in args])
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_debug_shows_traceback():
    r = run("--debug", "metrics", "missing.jsonl")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_segment_check_and_html(sample_path, tmp_path, smol_tokenizer):
    html = tmp_path / "m.html"
    r = run("segment", str(sample_path), "--check", "--html", str(html))
    assert r.returncode == 0, r.stderr
    assert "no overlap" in r.stdout
    page = html.read_text()
    assert 'class="tok r"' in page and 'class="tok a"' in page


def test_segment_rejects_trajectory_without_act(tmp_path, smol_tokenizer):
    from sad_eval.trajectory import Episode, Step, TrajectoryWriter

    p = tmp_path / "bad.jsonl"
    with TrajectoryWriter(p) as w:
        w.write(Episode("alfworld", "s", "t", "a", steps=[Step("thinking", "")]))
    r = run("segment", str(p))
    assert r.returncode == 2 and "no ACT span" in r.stderr
