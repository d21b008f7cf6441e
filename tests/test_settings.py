"""One source for settings: the settings dataclasses make the commands' options, and an experiment's
stage commands are the argv of the settings each stage runs with (sad_eval/options.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sad_eval.cli import main, parse_settings
from sad_eval.distill.config import TrainConfig
from sad_eval.errors import SadEvalError
from sad_eval.experiment import load_config, stage_command, stage_settings
from sad_eval.options import to_argv
from sad_eval.settings import RunSettings

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MICRO = Path(__file__).parent / "data" / "micro.yaml"


@pytest.mark.parametrize("config", [MICRO, *sorted(CONFIGS.glob("*.yaml"))], ids=lambda p: p.stem)
def test_every_stage_command_parses_back_to_its_settings(config, tmp_path):
    cfg = load_config(config)
    plans = stage_settings(cfg, tmp_path / cfg.name, progress=False)
    assert len(plans) == 2 * len(cfg.envs) + len(cfg.students) * len(cfg.seeds) * len(cfg.methods) * (1 + len(cfg.envs))
    for name, settings in plans.items():
        command = stage_command(settings)
        assert parse_settings(shlex.split(command)) == settings, (name, command)


def test_the_gpu_study_renders_bf16_as_a_flag_the_cli_takes(tmp_path):
    cfg = load_config(CONFIGS / "paper-gpu.yaml")
    distill = next(s for n, s in stage_settings(cfg, tmp_path).items() if n.startswith("distill-"))
    argv = shlex.split(stage_command(distill))
    assert "--bf16" in argv and "True" not in argv and distill.bf16 is True
    # the old rendering, `--bf16 True`, is what the command refused (exit 2)
    i = argv.index("--bf16")
    with pytest.raises(Exception) as e:
        parse_settings(argv[:i + 1] + ["True"] + argv[i + 1:])
    assert type(e.value).__name__ == "UsageError" and "True" in str(e.value)


def test_the_demo_eval_stage_says_its_step_cap(tmp_path):
    cfg = load_config(CONFIGS / "quick.yaml")
    plans = stage_settings(cfg, tmp_path)
    for name in ("collect-alfworld-eval", "eval-tiny-sad-s0-alfworld"):
        assert plans[name].max_steps == 25 and "--max-steps 25" in stage_command(plans[name])
    # the threads of a config's eval section travel as an option, not through the environment
    assert plans["eval-tiny-sad-s0-webshop"].threads == 1 and "--threads 1" in stage_command(plans["eval-tiny-sad-s0-webshop"])


def test_a_setting_a_command_cannot_express_is_an_error_not_dropped():
    with pytest.raises(ValueError, match="samples"):
        to_argv(RunSettings(agent="expert", env="alfworld", samples=2), "eval")
    with pytest.raises(ValueError, match="topk_tokenizer"):
        to_argv(RunSettings(agent="expert", env="alfworld", topk_tokenizer="x"), "eval")


def test_flags_keep_their_names_and_defaults():
    s = parse_settings(["eval", "--agent", "expert", "--env", "alfworld"])
    assert s == RunSettings(agent="expert", env="alfworld")
    s = parse_settings(["collect", "--teacher", "oracle", "--env", "webshop", "--no-chat", "--no-retry-errors",
                        "--no-prefix-cache", "--teacher-topk", "5", "--samples", "2", "--tasks", "a,b"])
    assert (s.kind, s.agent, s.chat, s.retry_errors, s.prefix_cache, s.teacher_topk, s.samples, s.tasks) == \
        ("collect", "oracle", False, False, False, 5, 2, "a,b")
    t = parse_settings(["distill", "--data", "a.jsonl", "--student", "tiny", "--out", "o", "--all-episodes",
                        "--rule", "hotpotqa=hotpotqa-two-phase", "--exemplars", "alfworld=react", "--no-bf16"])
    assert t == TrainConfig(data=["a.jsonl"], student="tiny", out="o", only_success=False,
                            rules={"hotpotqa": "hotpotqa-two-phase"}, exemplars={"alfworld": "react"}, bf16=False)
    assert TrainConfig(data=[], student="s", out="o").max_steps == 200 and RunSettings("a", "e").max_new_tokens == 128


def test_resume_and_overwrite_together_are_one_clear_error(capsys):
    assert main(["eval", "--agent", "expert", "--env", "alfworld", "--resume", "--overwrite"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_an_experiment_checks_every_stage_before_running_any(tmp_path):
    from sad_eval.experiment import run_experiment

    bad = tmp_path / "bad.yaml"
    bad.write_text("envs: {hotpotqa: {train_tasks: 1, eval_tasks: 1}}\nstudents: [tiny]\nmethods: [sad]\n"
                   "distill: {loss: magic}\n")
    with pytest.raises(SadEvalError, match="unknown --loss 'magic'"):
        run_experiment(bad, tmp_path / "run", log=lambda *a: None, progress=False)
    assert not (tmp_path / "run" / "teacher").exists()  # nothing was collected first


# ---------------------------------------------------------------- the agent registry


def test_agent_kinds_and_the_env_keywords_each_needs(tmp_path):
    from sad_eval.agents.experts import expert_env_kwargs
    from sad_eval.agents.registry import agent_env_kwargs, agent_kind, default_batch

    assert [agent_kind(a).name for a in ("expert", "oracle", "openai:gpt-x", "smollm2-135m", str(tmp_path))] == \
        ["scripted", "scripted", "openai", "hf", "hf"]
    for env in ("alfworld", "webshop", "hotpotqa"):
        assert agent_env_kwargs("expert", env) == expert_env_kwargs(env)  # the experts registry, by name
        assert agent_env_kwargs("smollm2-135m", env) == {} == agent_env_kwargs("openai:m", env)
    assert agent_env_kwargs("expert", "alfworld") == {"privileged": True}
    assert (default_batch("oracle"), default_batch("openai:m"), default_batch(str(tmp_path))) == (1, 8, 8)
    assert not agent_kind("expert").generates and agent_kind("openai:m").generates


def test_exemplars_are_refused_for_an_agent_that_writes_no_prompt():
    from sad_eval.settings import run_config

    with pytest.raises(SadEvalError, match="model agents"):
        run_config(RunSettings(agent="oracle", env="hotpotqa", exemplars="2"))


def test_an_openai_agent_needs_a_base_url_or_the_environment_variable(monkeypatch):
    from sad_eval.settings import run_config

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(SadEvalError, match=r"needs --base-url .* or \$OPENAI_BASE_URL"):
        run_config(RunSettings(agent="openai:m", env="hotpotqa"))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert run_config(RunSettings(agent="openai:m", env="hotpotqa")).spec.base_url == "http://127.0.0.1:9/v1"
    # an explicit --base-url wins over the variable
    cfg = run_config(RunSettings(agent="openai:m", env="hotpotqa", base_url="http://127.0.0.1:8/v1"))
    assert cfg.spec.base_url == "http://127.0.0.1:8/v1"


def test_declared_bounds_hold_for_the_api_as_for_the_command(capsys, tmp_path):
    import sad_eval

    with pytest.raises(SadEvalError, match="-n must be at least 1, got 0; leave it out"):
        sad_eval.evaluate("oracle", "hotpotqa", n=0)
    assert main(["eval", "--agent", "oracle", "--env", "hotpotqa", "-n", "0"]) == 2
    assert "-n must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SadEvalError, match="--threads must be at least 1, got 0"):
        sad_eval.evaluate("oracle", "hotpotqa", threads=0)
    with pytest.raises(SadEvalError, match="--batch-size must be at least 1, got 0"):
        sad_eval.distill(tmp_path / "none.jsonl", "tiny", tmp_path / "ckpt", batch_size=0)


def test_a_model_teachers_endpoint_topk_and_exemplars_are_in_its_commands(tmp_path):
    conf = tmp_path / "endpoint.yaml"
    conf.write_text("envs:\n  hotpotqa: {train_tasks: 2, eval_tasks: 1, teacher: 'openai:m', exemplars: 2,\n"
                    "             base_url: 'http://127.0.0.1:9/v1'}\nstudents: [tiny]\nmethods: [sad]\n"
                    "collect: {teacher_topk: 5}\ndistill: {min_lr_ratio: 0.2, c0: 0.3, bf16: false}\n")
    plans = stage_settings(load_config(conf), tmp_path / "run")
    train = stage_command(plans["collect-hotpotqa-train"])
    assert "--base-url http://127.0.0.1:9/v1" in train and "--teacher-topk 5" in train and "--exemplars 2" in train
    distill = stage_command(plans["distill-tiny-sad-s0"])
    # TrainConfig fields that had no flag before (a config could set them; the command could not)
    assert "--min-lr-ratio 0.2" in distill and "--c0 0.3" in distill and "--no-bf16" in distill
    assert "--exemplars hotpotqa=2" in distill
    for name, s in plans.items():
        assert parse_settings(shlex.split(stage_command(s))) == s, name


def test_a_config_section_key_no_stage_applies_is_refused(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("envs: {hotpotqa: {}}\nstudents: [tiny]\neval: {temperature: 0.7}\n")
    with pytest.raises(SadEvalError, match="eval.temperature is not a setting of the eval section"):
        load_config(conf)
    conf.write_text("envs: {hotpotqa: {}}\nstudents: [tiny]\neval: {prefix_cache: 1}\n")
    with pytest.raises(SadEvalError, match="eval.prefix_cache must be true or false"):
        load_config(conf)


def test_a_registered_agent_kind_runs_through_eval(tmp_path, data_root, monkeypatch):
    """The registry is the extension point: a new kind (here `parrot:ANSWER`, a scripted agent that
    always answers ANSWER) is named, built and run by `evaluate` like the built-in ones."""
    import sad_eval
    from sad_eval.agents import registry
    from sad_eval.agents.base import Turn

    class Parrot:
        def __init__(self, answer):
            self.name, self.answer = f"parrot:{answer}", answer

        def act(self, states):
            return [Turn(reasoning="I repeat myself.", action=f"finish[{self.answer}]") for _ in states]

    kind = registry.AgentKind("parrot", "parrot:ANSWER", lambda a: a.startswith("parrot:"),
                              lambda spec: Parrot(spec.agent.split(":", 1)[1]), generates=False, batch=2)
    monkeypatch.setattr(registry, "KINDS", list(registry.KINDS))
    registry.register_kind(kind)
    assert registry.agent_kind("parrot:yes") is kind and registry.agent_kind("ckpt/x").name == "hf"
    res = sad_eval.evaluate("parrot:yes", "hotpotqa", n=2, out=tmp_path / "p.jsonl")
    assert [e.agent for e in res.episodes] == ["parrot:yes"] * 2
    assert [s.action for e in res.episodes for s in e.steps] == ["finish[yes]"] * 2
    assert res.manifest["agent_config"]["kind"] == "parrot" and res.manifest["batch"] == 2
