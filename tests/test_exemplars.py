"""Few-shot exemplars (`--exemplars`): where they come from, and that teacher, student training and
eval prompts carry the same ones (the one prompt builder)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from sad_eval.agents import exemplars as X
from sad_eval.agents.base import EpisodeState
from sad_eval.errors import SadEvalError
from sad_eval.segment import parse_turn
from sad_eval.trajectory import load_trajectories

FIXTURE = Path(__file__).parent / "data" / "distill_teacher.jsonl"


def test_spec_parsing():
    assert X.parse_spec(None) == "" and X.parse_spec("0") == "" and X.parse_spec(" 2 ") == "2"
    assert X.parse_spec("react") == "react" and X.parse_spec("react:webthink_simple_3") == "react:webthink_simple_3"
    for bad in ("two", "-1", "react:", "2.5"):
        with pytest.raises(SadEvalError, match="bad --exemplars"):
            X.parse_spec(bad)
    assert X.parse_env_specs(["2"]) == {"*": "2"}
    assert X.parse_env_specs(["alfworld=react", "hotpotqa=0"]) == {"alfworld": "react"}
    assert X.spec_for({"*": "2", "alfworld": "react"}, "webshop") == "2"


def test_react_alfworld_exemplars_are_per_task_type_in_our_format(data_root):
    from sad_eval.envs.alfworld import TASK_TYPES

    ex = X.load_exemplars("alfworld", "react", data_root)
    assert set(ex.by_type) == set(TASK_TYPES) and all(len(v) == 2 for v in ex.by_type.values())
    heat = ex.for_task("train/pick_heat_then_place_in_recep-Egg-None-Fridge-1/trial_1")
    put = ex.for_task("valid_unseen/pick_and_place_simple-Mug-None-Desk-2/trial_0")
    assert heat != put and all("heat" in e for e in heat)
    for e in heat + put:
        assert "Your task is to:" in e and "\nReasoning: " in e and "\nAction: " in e and "> " not in e
    assert ex.digest() == X.load_exemplars("alfworld", "react", data_root).digest()
    one = X.load_exemplars("alfworld", "react:react_put_2", data_root)
    assert len(one.for_task("x/pick_heat_then_place_in_recep-a/t")) == 1 and one.digest() != ex.digest()


def test_react_hotpotqa_prompt_converted_to_reasoning_action_lines(data_root):
    ex = X.load_exemplars("hotpotqa", "react", data_root).for_task("any")
    assert len(ex) == 6
    for e in ex:
        assert e.startswith("Question: ") and "Thought" not in e and "Search[" not in e
        turns = [t for t in e.split("\n") if t.startswith(("Action:", "Answer:"))]
        assert turns[0].startswith("Action: search[") and turns[-1].startswith("Answer: ")
        # every converted turn parses as the agent's own output would
        first = e.split("\nObservation:")[0].split("\n", 1)[1] + "\n"
        assert parse_turn("hotpotqa", first).valid
    assert len(X.load_exemplars("hotpotqa", "react:webthink_simple_3", data_root).for_task("q")) == 3
    with pytest.raises(SadEvalError, match="no 'nope'"):
        X.load_exemplars("hotpotqa", "react:nope", data_root)
    with pytest.raises(SadEvalError, match="WebShop|webshop"):
        X.load_exemplars("webshop", "react", data_root)


def test_teacher_exemplars_come_from_train_never_from_eval(data_root, tmp_path, monkeypatch):
    from sad_eval.envs.hotpotqa import list_tasks

    monkeypatch.setenv("SAD_EVAL_CACHE", str(tmp_path))
    ex = X.load_exemplars("hotpotqa", "2", data_root)
    assert len(ex.for_task("q")) == 2 and all("Reasoning: " in e for e in ex.for_task("q"))
    ids = set(json.loads((tmp_path / "exemplars" / "hotpotqa.json").read_text())["task_ids"])
    assert ids <= set(list_tasks("train", data_root))
    assert not ids & set(list_tasks("dev500", data_root))


def _student(tmp_path, tiny_checkpoint, **args) -> Path:
    ckpt = tmp_path / "student"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / "training_args.json").write_text(json.dumps(args))
    return ckpt


def test_student_is_evaluated_with_the_prompt_it_was_trained_on(tmp_path, tiny_checkpoint, smol_tokenizer, data_root):
    """The distill windows' context for turn k = the eval agent's context for the same state."""
    from sad_eval.agents.registry import AgentSpec, make_policy
    from sad_eval.distill.examples import build_examples, episode_exemplars

    specs = {"*": "react"}
    eps = [e for e in load_trajectories([FIXTURE]) if e.env == "alfworld" and e.success]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        examples, _ = build_examples(eps, smol_tokenizer, seq_len=4096, reserve=128,
                                     exemplars=episode_exemplars(specs))
    ckpt = _student(tmp_path, tiny_checkpoint, seq_len=4096, chat=True, exemplars=specs)
    policy = make_policy(AgentSpec(agent=str(ckpt), env="alfworld"))
    plain = make_policy(AgentSpec(agent=str(ckpt), env="alfworld", exemplars="0"))
    checked = 0
    for ex in examples:
        ep = next(e for e in eps if e.task_id == ex.task_id)
        for turn, t0, _ in ex.turn_tokens:
            state = EpisodeState(env="alfworld", task_id=ep.task_id, task=ep.prompt, steps=ep.steps[:turn])
            ctx = policy.context(state)
            assert ex.input_ids[:t0] == smol_tokenizer(ctx, add_special_tokens=False)["input_ids"]
            assert "Here are examples." in ctx and "Here are examples." not in plain.context(state)
            checked += 1
    assert checked >= 2
    # the run manifest names the exemplars (spec and digest)
    desc = AgentSpec(agent=str(ckpt), env="alfworld").describe()
    assert desc["exemplars"]["spec"] == "react" and len(desc["exemplars"]["sha256"]) == 16


def test_openai_payload_carries_the_tasks_exemplars(data_root):
    from sad_eval.agents.openai_compat import OpenAIPolicy

    ex = X.load_exemplars("alfworld", "react", data_root)
    policy = OpenAIPolicy("m", "http://127.0.0.1:9/v1", exemplars=ex, stop_at_action=False)
    a = EpisodeState(env="alfworld", task_id="t/pick_cool_then_place_in_recep-a/b", task="Your task is to: cool x.")
    b = EpisodeState(env="alfworld", task_id="t/look_at_obj_in_light-a/b", task="Your task is to: look.")
    sa, sb = (policy.payload(s)["messages"][0]["content"] for s in (a, b))
    assert ex.for_task(a.task_id)[0].strip() in sa and ex.for_task(b.task_id)[0].strip() in sb and sa != sb
    policy.close()


def test_cli_rejects_bad_exemplars(tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "sad_eval.cli", *args], capture_output=True, text=True)

    r = run("eval", "--agent", "expert", "--env", "hotpotqa", "--exemplars", "2", "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode == 2 and "model agents" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("eval", "--agent", "smollm2-135m", "--env", "hotpotqa", "--exemplars", "lots",
            "--out", str(tmp_path / "y.jsonl"))
    assert r.returncode == 2 and "bad --exemplars" in r.stderr
    assert not (tmp_path / "y.jsonl").exists()


def test_experiment_config_key(tmp_path):
    from sad_eval.experiment import _student_exemplars, _teacher_exemplars, load_config

    cfg_file = tmp_path / "x.yaml"
    cfg_file.write_text("envs:\n  hotpotqa: {teacher: openai:m, exemplars: 2}\n  alfworld: {}\n"
                        "students: [tiny]\nmethods: [sad]\n")
    cfg = load_config(cfg_file)
    assert _student_exemplars(cfg) == {"hotpotqa": "2"}  # zero-shot envs add nothing (digests unchanged)
    assert _teacher_exemplars(cfg.envs[0]) == "2" and _teacher_exemplars(cfg.envs[1]) == ""
    cfg_file.write_text("envs:\n  hotpotqa: {exemplars: many}\nstudents: [tiny]\n")
    with pytest.raises(SadEvalError, match="envs.hotpotqa.exemplars"):
        load_config(cfg_file)


def test_webshop_teacher_exemplars_from_train(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SAD_EVAL_CACHE", str(tmp_path))
    ex = X.load_exemplars("webshop", "2", data_root).for_task("fixed_0")
    assert len(ex) == 2 and all("Action: search[" in e and "click[" in e for e in ex)
    ids = json.loads((tmp_path / "exemplars" / "webshop.json").read_text())["task_ids"]
    from sad_eval.envs.webshop.env import list_tasks

    assert set(ids) <= set(list_tasks("train", data_root)) and not set(ids) & set(list_tasks("test", data_root))
