"""The Python API (`sad_eval.evaluate / collect / distill`): real envs, the real scripted oracle, a
user's own Policy object, and the README's example run as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sad_eval
from sad_eval.agents.base import Turn

README = Path(__file__).parents[1] / "README.md"


def test_evaluate_oracle_returns_episodes_metrics_and_a_frame(data_root, tmp_path):
    out = tmp_path / "hp.jsonl"
    res = sad_eval.evaluate("oracle", "hotpotqa", n=3, out=out)
    assert isinstance(res, sad_eval.EvalResult) and res.path == out
    assert len(res.episodes) == 3 and all(e.agent for e in res.episodes)
    # .metrics has the keys of `sad-eval metrics --format json`
    cli = subprocess.run([sys.executable, "-m", "sad_eval.cli", "metrics", str(out), "--format", "json"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert set(json.loads(cli.stdout)) == set(res.metrics)
    assert res.metrics["episodes"] == 3 and res.metrics["tsr"] == 100.0
    df = res.to_pandas()
    assert list(df["task_id"]) == [e.task_id for e in res.episodes] and df["success"].all()
    assert {"em", "f1", "steps", "status"} <= set(df.columns)
    # a second call resumes: nothing replayed, same episodes; a larger n plays only the new ones
    again = sad_eval.evaluate("oracle", "hotpotqa", n=3, out=out)
    assert [e.to_dict() for e in again.episodes] == [e.to_dict() for e in res.episodes]
    assert again.manifest["resumed_with"] == 3
    more = sad_eval.evaluate("oracle", "hotpotqa", n=4, out=out)
    assert len(more.episodes) == 4 and more.manifest["resumed_with"] == 3


class AlwaysLook:
    """A user's own policy: any object with `name` and `act`."""

    name = "always-look"

    def act(self, states):
        return [Turn(reasoning="I will look around.", action="search[Nothing]", raw="Reasoning: ...") for _ in states]


def test_evaluate_accepts_a_policy_object(data_root, tmp_path):
    res = sad_eval.evaluate(AlwaysLook(), "hotpotqa", n=2, out=tmp_path / "mine.jsonl", max_steps=2)
    assert len(res.episodes) == 2 and {e.agent for e in res.episodes} == {"always-look"}
    assert all(len(e.steps) == 2 and e.steps[0].action == "search[Nothing]" for e in res.episodes)
    assert all(e.steps[0].raw == "Reasoning: ..." for e in res.episodes)  # the raw text is kept
    assert res.metrics["tsr"] == 0.0
    assert res.manifest["agent_config"]["kind"] == "custom"


def test_collect_and_unknown_options(data_root, tmp_path):
    res = sad_eval.collect("oracle", "hotpotqa", split="train", n=2, out=tmp_path / "t.jsonl")
    assert len(res.episodes) == 2 and res.manifest["kind"] == "collect"
    with pytest.raises(TypeError, match="unknown options"):
        sad_eval.evaluate("oracle", "hotpotqa", n=1, bogus=1)
    with pytest.raises(sad_eval.api.SadEvalError, match="agent must be"):
        sad_eval.evaluate(42, "hotpotqa")


def test_distill_through_the_api(tiny_checkpoint, sample_path, tmp_path):
    import sad_eval.distill.trainer  # noqa: F401  (binds `sad_eval.distill` to the subpackage: still callable)

    res = sad_eval.distill(sample_path, str(tiny_checkpoint), tmp_path / "student", max_steps=2, batch_size=2,
                           eval_every=0, seq_len=256, threads=1)
    assert res.path == tmp_path / "student" and (res.path / "config.json").is_file()
    assert res.summary["steps"] == 2 and res.summary["loss"] == res.summary["loss"]  # a number, not NaN


def test_readme_python_example_runs(data_root, tmp_path):
    """The README's Python API example, executed as written (in a scratch directory)."""
    text = README.read_text()
    m = re.search(r"### Python API.*?```python\n(.*?)```", text, re.S)
    assert m, "README has no Python API example"
    r = subprocess.run([sys.executable, "-c", m.group(1)], capture_output=True, text=True, cwd=tmp_path,
                       env={**__import__("os").environ, "PYTHONPATH": str(README.parent)})
    assert r.returncode == 0, r.stderr
    assert "TSR" in r.stdout


@pytest.mark.slow
def test_readme_distill_example_runs(data_root, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text().split("### Python API", 1)[1], re.S)
    code = "import sad_eval\n" + blocks[1]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={**__import__("os").environ, "PYTHONPATH": str(README.parent), "SAD_EVAL_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ckpt/tiny-sad/config.json").is_file() and "'tsr'" in r.stdout
