"""CLI consistency and bad input (issue 21): the bare form takes `eval`'s options, --debug anywhere,
--resume, --version, flags shown as flags, collect's options; corrupt lines as one clean warning;
distill refuses data without the spans its method trains on."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from sad_eval.trajectory import Episode, Step, TrajectoryWriter


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "sad_eval.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_bare_form_accepts_eval_options_and_scripted_batch_is_one(data_root, tmp_path):
    out = tmp_path / "bare.jsonl"
    r = run("--agent", "oracle", "--env", "hotpotqa", "-n", "2", "--out", str(out), "--no-progress", "--resume")
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 2
    manifest = json.loads(out.with_name("bare.manifest.json").read_text())
    assert manifest["batch"] == 1  # scripted experts: one episode per worker, honest s/ep
    r = run("eval", "--agent", "oracle", "--env", "hotpotqa", "--resume", "--overwrite", "--out", str(out))
    assert r.returncode == 2 and "contradict" in r.stderr


def test_version_debug_anywhere_and_flags_without_types():
    r = run("--version")
    assert r.returncode == 0 and re.match(r"sad-eval \d+\.\d+", r.stdout)
    r = run("metrics", "missing.jsonl", "--debug")  # after the command too
    assert r.returncode != 0 and "Traceback" in r.stderr and "No such option" not in r.stderr
    for cmd in ("eval", "collect", "distill", "report", "export"):
        h = run(cmd, "--help")
        assert h.returncode == 0 and "<bool>" not in h.stdout, cmd
    h = run("collect", "--help").stdout
    for opt in ("--max-context", "--chat", "--max-steps", "--api", "--tokenizer", "--resume"):
        assert opt in h, opt
    # every collect option has help text: no bare option rows
    rows = [line for line in h.splitlines() if re.match(r"^│\s+(\*\s+)?--[a-z-]+(\s+--no-[a-z-]+)?\s+(<\w+>)?\s*│?$", line)]
    assert not rows, rows


def test_corrupt_lines_warn_in_one_clean_line_and_strict_refuses(sample_path, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(sample_path.read_text() + '{"env": "alfworld", "task_id": \n')
    r = run("metrics", str(bad), "--format", "json")
    assert r.returncode == 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "skipped a corrupt" in lines[0]
    assert "UserWarning" not in r.stderr and "warnings.warn" not in r.stderr
    r = run("metrics", str(bad), "--strict")
    assert r.returncode == 2 and "refused a corrupt" in r.stderr and "skipped" not in r.stderr


def test_distill_refuses_trajectories_without_reason_spans(tmp_path, tiny_checkpoint):
    data = tmp_path / "noreason.jsonl"
    with TrajectoryWriter(data) as w:
        for i in range(3):
            w.write(Episode(env="alfworld", split="train", task_id=f"t{i}", agent="x", success=True, prompt="Task.",
                            steps=[Step("", "look", "You see a room."), Step("", "go to desk 1", "done")]))
    r = run("distill", "--data", str(data), "--student", str(tiny_checkpoint), "--out", str(tmp_path / "s"),
            "--max-steps", "2", "--threads", "1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "has no REASON span" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s" / "model.safetensors").exists()
