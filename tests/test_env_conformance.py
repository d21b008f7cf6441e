"""Every registered env keeps the one contract of `sad_eval.envs.base.TextEnv` (the three built-in
envs and the toy env of `tests/toy_env.py`, added through the public `register_env`): gymnasium's
env checker on, split-checked task selection, the same reset/step order and after-the-end
behaviour, the typed info keys, and privileged facts only when the teacher asks for them."""

from __future__ import annotations

import importlib.util
import warnings

import gymnasium
from gymnasium.utils.env_checker import check_env
import pytest

import toy_env
from sad_eval.envs import EpisodeOrderError, TextEnv, env_names, get_spec, register_env, unregister_env
from sad_eval.envs.spec import load
from sad_eval.errors import SadEvalError


ALFWORLD_GAME = "valid_unseen/look_at_obj_in_light-AlarmClock-None-DeskLamp-308/trial_T20190908_222917_366542"
HAS_ENGINE = importlib.util.find_spec("textworld") is not None and importlib.util.find_spec("alfworld") is not None
ENVS = ["alfworld", "webshop", "hotpotqa", toy_env.NAME]


@pytest.fixture(scope="module", autouse=True)
def toy():
    register_env(toy_env.SPEC)  # the 4th env, through the public extension point only
    yield
    unregister_env(toy_env.NAME)


@pytest.fixture(scope="module")
def webshop_url(data_root):
    from sad_eval.envs.webshop.env import _Server

    srv = _Server(data_root, start_timeout_s=120)
    yield srv.url
    srv.stop()


@pytest.fixture
def setup(request, data_root):
    """(env name, constructor keywords, a task id of another split) for the env under test."""
    name = request.param
    if name == "alfworld":
        if not HAS_ENGINE:
            pytest.skip("ALFWorld engine not installed")
        from sad_eval.envs.alfworld import list_tasks

        return name, {"data_root": str(data_root), "tasks": [ALFWORLD_GAME]}, list_tasks("train", data_root)[0]
    if name == "webshop":
        return name, {"data_root": str(data_root), "server_url": request.getfixturevalue("webshop_url")}, "fixed_600"
    if name == "hotpotqa":
        from sad_eval.envs.hotpotqa import list_tasks

        return name, {"data_root": str(data_root)}, list_tasks("train", data_root)[0]
    return name, {}, "count-02"


def test_every_registered_env_is_covered():
    assert set(env_names()) == set(ENVS)


@pytest.mark.parametrize("setup", ENVS, indirect=True)
def test_gymnasium_env_checker(setup):
    name, kwargs, _ = setup
    spec = get_spec(name)
    assert issubclass(load(spec.entry_point), TextEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        env = gymnasium.make(spec.gym_id, max_steps=2, **kwargs)  # the env checker on
        try:
            obs, info = env.reset(seed=0)
            assert env.observation_space.contains(obs)
            obs, *_ = env.step("look around")
            assert env.observation_space.contains(obs)
            check_env(env.unwrapped)
        finally:
            env.close()


@pytest.mark.parametrize("setup", ENVS, indirect=True)
def test_contract(setup):
    name, kwargs, other_split_task = setup
    spec = get_spec(name)
    env = gymnasium.make(spec.gym_id, max_steps=1, disable_env_checker=True, **kwargs).unwrapped
    try:
        n = len(env.task_ids)
        assert n and env.task_ids == list(env.task_ids) and env.split == spec.default_split
        with pytest.raises(EpisodeOrderError, match="reset"):
            env.step("look")
        with pytest.raises(SadEvalError, match=rf"index {n} out of range.*{n} tasks"):
            env.reset(options={"index": n})
        with pytest.raises(SadEvalError, match=rf"task id .* for split {spec.default_split!r}"):
            env.reset(options={"task_id": other_split_task})
        obs, info = env.reset(seed=0, options={"index": -1})
        assert info["task_id"] == env.task_ids[-1] and isinstance(obs, str) and obs
        assert "privileged" not in info  # only for a teacher that asks
        obs, reward, terminated, truncated, info = env.step("no such action at all")
        assert terminated or truncated  # max_steps=1
        assert info["rejected"] is True and info["success"] is False and info["score"] == 0.0
        assert env.observation_space.contains(obs)
        with pytest.raises(EpisodeOrderError, match="over"):  # after the end: the same in every env
            env.step("look")
        again, info = env.reset(seed=0, options={"task_id": env.task_ids[0]})
        assert info["task_id"] == env.task_ids[0]
    finally:
        env.close()


@pytest.mark.parametrize("setup", ENVS, indirect=True)
def test_privileged_only_when_the_teacher_asks(setup):
    name, kwargs, _ = setup
    spec = get_spec(name)
    asks = bool(spec.teacher_env_kwargs.get("privileged"))
    env = gymnasium.make(spec.gym_id, disable_env_checker=True, **kwargs, **spec.teacher_env_kwargs).unwrapped
    try:
        _, info = env.reset(seed=0, options={"index": 0})
        assert ("privileged" in info) == asks
    finally:
        env.close()


def test_import_sad_eval_registers_the_gym_ids():
    """`import gymnasium as gym, sad_eval; gym.make("sad_eval/HotPotQA-v0")` (a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import gymnasium as gym, sad_eval, sys\n"
            "ids = [i for i in gym.registry if i.startswith('sad_eval/')]\n"
            "print(sorted(ids))\n"
            "assert 'textworld' not in sys.modules and 'sad_eval.envs.webshop.env' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['sad_eval/ALFWorld-v0', 'sad_eval/HotPotQA-v0', 'sad_eval/WebShop-v0']"


def test_gym_make_hotpotqa_after_import_sad_eval(data_root):
    import subprocess
    import sys

    code = ("import gymnasium as gym, sad_eval\n"
            f"env = gym.make('sad_eval/HotPotQA-v0', data_root={str(data_root)!r})\n"
            "obs, info = env.reset(seed=0)\n"
            "print(obs.startswith('Question: '))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
