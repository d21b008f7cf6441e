"""A 4th env added from tests/ through the public extension point only (`tests/toy_env.py`:
`EnvSpec` + `TextEnv` + `register_env`, no edit under `sad_eval/`), and the project's own commands
on it: collect, distill (a tiny student, 2 steps), eval, metrics, report, data status."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest

import toy_env
from sad_eval.cli import main
from sad_eval.envs import get_spec, register_env, unregister_env
from sad_eval.envs.spec import discover, load_entry_point
from sad_eval.errors import SadEvalError
from sad_eval.trajectory import load_trajectories


@pytest.fixture
def toy():
    register_env(toy_env.SPEC)
    yield toy_env.SPEC
    unregister_env(toy_env.NAME)


def test_collect_distill_eval_metrics_report(toy, tiny_checkpoint, tmp_path, capsys):
    teacher = tmp_path / "collect.jsonl"
    assert main(["collect", "--teacher", "expert", "--env", toy.name, "--out", str(teacher), "--no-progress"]) == 0
    eps = load_trajectories([teacher])
    assert len(eps) == 8 and all(e.success and e.split == "train" for e in eps)  # count-02 .. count-09
    assert [s.action for s in eps[0].steps] == ["say[1]", "say[2]"]
    assert all(s.rejected is False for e in eps for s in e.steps)

    student = tmp_path / "student"
    assert main(["distill", "--data", str(teacher), "--student", str(tiny_checkpoint), "--out", str(student),
                 "--max-steps", "2", "--batch-size", "2", "--seq-len", "256", "--eval-every", "0",
                 "--threads", "1"]) == 0
    assert (student / "model.safetensors").is_file()

    run = tmp_path / "eval.jsonl"
    assert main(["eval", "--agent", str(student), "--env", toy.name, "-n", "2", "--max-steps", "2",
                 "--max-new-tokens", "8", "--out", str(run), "--no-progress"]) == 0
    evals = load_trajectories([run])
    assert len(evals) == 2 and {e.split for e in evals} == {"test"}  # the spec's default eval split
    assert all(len(e.steps) == 2 for e in evals)  # a random student does not count; the cap ends it
    capsys.readouterr()

    assert main(["metrics", str(run), "--teacher", str(teacher), "--format", "json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["episodes"] == 2 and metrics["tsr"] == 0.0
    assert "toycount_progress" in metrics  # the env's own metric, from its spec
    # the typed flag: a random student's actions are refused by the env (when well-formed ones)
    assert metrics["rejected_rate"] is None or metrics["rejected_rate"] == 100.0

    assert main(["metrics", str(teacher), "--format", "json"]) == 0
    taught = json.loads(capsys.readouterr().out)
    assert taught["tsr"] == 100.0 and taught["toycount_progress"] == 100.0 and taught["rejected_rate"] == 0.0

    assert main(["report", str(teacher), str(run), "--format", "md"]) == 0
    table = capsys.readouterr().out
    assert "toycount TSR%" in table and "toycount Prog" in table

    assert main(["data", "status"]) == 0
    assert "toycount" in capsys.readouterr().out


def test_unknown_env_is_one_clear_error(toy, tmp_path, capsys):
    assert main(["collect", "--teacher", "expert", "--env", "nope", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "unknown env 'nope'" in err and "toycount" in err and "Traceback" not in err


def test_entry_point_discovery_loads_a_spec():
    unregister_env(toy_env.NAME)
    try:
        discover([EntryPoint(name="toycount", value="toy_env:SPEC", group="sad_eval.envs")])
        assert get_spec("toycount") is toy_env.SPEC
        discover([EntryPoint(name="toycount", value="toy_env:SPEC", group="sad_eval.envs")])  # again: a no-op
        with pytest.raises(SadEvalError, match="not an EnvSpec"):
            load_entry_point(EntryPoint(name="bad", value="toy_env:NAME", group="sad_eval.envs"))
    finally:
        unregister_env(toy_env.NAME)


def test_a_taken_name_is_refused(toy):
    import dataclasses

    with pytest.raises(SadEvalError, match="already registered"):
        register_env(dataclasses.replace(toy, gym_id="other/Toy-v0"))
