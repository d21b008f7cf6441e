"""ALFWorld env on real games from the installed data (issue 3)."""

from __future__ import annotations

import importlib.util
import warnings

import gymnasium
import pytest

from sad_eval.errors import SadEvalError

pytestmark = pytest.mark.alfworld
needs_engine = pytest.mark.skipif(
    importlib.util.find_spec("textworld") is None or importlib.util.find_spec("alfworld") is None,
    reason="ALFWorld engine not installed (textworld[pddl]==1.7.0, alfworld==0.3.5 --no-deps; `make setup`)",
)

# A small bedroom game. The winning commands were read once from the handcoded expert's plan,
# skipping its search of the shelves: the alarmclock is on desk 2, the desklamp on desk 1.
GAME = "valid_unseen/look_at_obj_in_light-AlarmClock-None-DeskLamp-308/trial_T20190908_222917_366542"
WINNING = ["go to desk 2", "take alarmclock 1 from desk 2", "go to desk 1", "use desklamp 1"]


@pytest.fixture(scope="module")
def env(data_root):
    from sad_eval.envs.alfworld import ALFWorldEnv

    e = ALFWorldEnv(split="valid_unseen", data_root=data_root, privileged=True)
    yield e
    e.close()


@pytest.fixture(scope="module")
def other_env(data_root):
    from sad_eval.envs.alfworld import ALFWorldEnv

    e = ALFWorldEnv(split="valid_unseen", data_root=data_root, privileged=True)
    yield e
    e.close()


def test_missing_data_names_install(tmp_path):
    from sad_eval.envs.alfworld import ALFWorldEnv, list_tasks

    for call in (lambda: list_tasks("valid_unseen", tmp_path), lambda: ALFWorldEnv(data_root=tmp_path)):
        with pytest.raises(SadEvalError, match="sad-eval data install"):
            call()


def test_missing_engine_is_one_clear_error(monkeypatch):
    import sys

    from sad_eval.envs import alfworld

    alfworld.engine.cache_clear()
    monkeypatch.setitem(sys.modules, "textworld", None)  # as if not installed
    try:
        with pytest.raises(SadEvalError, match="make setup"):
            alfworld.engine()
    finally:
        monkeypatch.undo()
        alfworld.engine.cache_clear()


def test_unknown_split_and_task(data_root):
    from sad_eval.envs.alfworld import list_tasks

    with pytest.raises(SadEvalError, match="unknown ALFWorld split"):
        list_tasks("test", data_root)


def test_task_ids_stable_and_sorted(data_root):
    from sad_eval.envs.alfworld import list_tasks, task_type_of

    ids = list_tasks("valid_unseen", data_root)
    assert len(ids) == 134 and ids == sorted(ids) and ids == list_tasks("valid_unseen", data_root)
    assert ids[0] == GAME
    assert len(list_tasks("valid_seen", data_root)) == 140
    train = list_tasks("train", data_root)
    assert len(train) == 200 and all(t.startswith("valid_train/") for t in train)
    assert {task_type_of(t) for t in ids} == {
        "pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
        "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place"}


@needs_engine
def test_reset_contract(env):
    assert env.task_ids[0] == GAME
    obs, info = env.reset(seed=0, options={"task_id": GAME})
    assert "Welcome" not in obs and "-=" not in obs
    assert obs.startswith("You are in the middle of a room.")
    assert obs.endswith("Your task is to: examine the alarmclock with the desklamp.")
    assert info["task_id"] == GAME
    assert info["task_type"] == info["meta"]["task_type"] == "look_at_obj_in_light"
    assert info["goal"] == "examine the alarmclock with the desklamp"
    assert "go to desk 2" in info["admissible_commands"]
    assert info["won"] is False and info["success"] is False and info["score"] == 0.0
    priv = info["privileged"]
    assert priv["expert_action"] == "look" and priv["expert_plan"] == ["look"]
    assert priv["task_params"]["object_target"] == "alarmclock"
    assert priv["task_params"]["toggle_target"] == "desklamp"
    assert obs in env.observation_space
    # by index gives the same game
    obs2, info2 = env.reset(options={"index": 0})
    assert (obs2, info2["task_id"]) == (obs, GAME)


@needs_engine
def test_hand_played_win(env):
    env.reset(seed=0, options={"task_id": GAME})
    rewards, obs_seen = [], []
    for cmd in WINNING:
        obs, reward, terminated, truncated, info = env.step(cmd)
        rewards.append(reward)
        obs_seen.append(obs)
    assert obs_seen[0].startswith("On the desk 2, you see")  # "You arrive at loc N." stripped
    assert "alarmclock 1" in obs_seen[0]
    assert obs_seen[1] == "You pick up the alarmclock 1 from the desk 2."
    assert rewards == [0.0, 0.0, 0.0, 1.0]
    assert terminated and not truncated
    assert info["won"] and info["success"] and info["score"] == 1.0 and info["steps"] == 4
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step("look")


@needs_engine
def test_invalid_action_and_step_cap(data_root):
    from sad_eval.envs.alfworld import ALFWorldEnv

    e = ALFWorldEnv(data_root=data_root, max_steps=3, tasks=[GAME])
    _, info = e.reset(seed=0)
    assert info["task_id"] == GAME and "privileged" not in info
    obs, reward, terminated, truncated, _ = e.step("fly to the moon")
    assert (obs, reward, terminated, truncated) == ("Nothing happens.", 0.0, False, False)
    obs, *_ = e.step("take alarmclock 1 from desk 2")  # not at desk 2 yet
    assert obs == "Nothing happens."
    obs, reward, terminated, truncated, info = e.step("")
    assert obs == "Nothing happens." and truncated and not terminated and info["success"] is False
    with pytest.raises(SadEvalError, match="unknown ALFWorld task id"):
        e.reset(options={"task_id": "valid_unseen/nope/trial"})
    e.close()


@needs_engine
def test_two_instances_step_independently(env, other_env):
    env.reset(seed=0, options={"task_id": GAME})
    other_env.reset(seed=0, options={"task_id": GAME})
    a, *_ , info_a = env.step("go to desk 2")
    b, *_ , info_b = other_env.step("go to shelf 1")
    assert a.startswith("On the desk 2") and b.startswith("On the shelf 1")
    assert "take alarmclock 1 from desk 2" in info_a["admissible_commands"]
    assert "take alarmclock 1 from desk 2" not in info_b["admissible_commands"]
    a, *_ = env.step("take alarmclock 1 from desk 2")
    b, *_ = other_env.step("take alarmclock 1 from desk 2")
    assert a.startswith("You pick up") and b == "Nothing happens."
    a, *_ = env.step("inventory")
    b, *_ = other_env.step("inventory")
    assert "alarmclock 1" in a and "alarmclock" not in b


@needs_engine
def test_reset_without_options_is_seeded(data_root):
    from sad_eval.envs.alfworld import ALFWorldEnv

    pool = [GAME, "valid_unseen/look_at_obj_in_light-AlarmClock-None-DeskLamp-308/trial_T20190908_222933_607649"]
    e = ALFWorldEnv(data_root=data_root, tasks=pool)
    first = [e.reset(seed=7)[1]["task_id"] for _ in range(2)]
    assert first[0] == first[1] and first[0] in pool
    e.close()


@needs_engine
def test_check_env_passes(data_root):
    from gymnasium.utils.env_checker import check_env

    import sad_eval.envs  # noqa: F401  registers the ids

    env = gymnasium.make("sad_eval/ALFWorld-v0", data_root=str(data_root), tasks=[GAME],
                         disable_env_checker=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped)
    env.close()


@needs_engine
def test_expert_wins_with_well_formed_turns(env):
    from sad_eval.agents.experts import make_expert
    from sad_eval.harness import run_episode
    from sad_eval.segment import ACT, REASON, linearize, parse_turn, segment

    teacher = make_expert("alfworld")
    assert teacher.name == "expert"
    ep = run_episode(env, teacher, "alfworld", GAME, split="valid_unseen")
    assert ep.status == "ok" and ep.success and ep.score == 1.0 and ep.steps[-1].reward == 1.0
    assert ep.meta["task_type"] == "look_at_obj_in_light"
    assert ep.steps[-1].action == "use desklamp 1"
    for s in ep.steps:
        assert s.reasoning and "\n" not in s.reasoning and s.action
    text = linearize(ep.steps, "alfworld")
    spans = segment(text, "alfworld")
    assert [s.kind for s in spans] == [REASON, ACT] * len(ep.steps)
    assert [s.body(text) for s in spans if s.kind == ACT] == [s.action for s in ep.steps]
    # reasoning: the plan first, then specific to each state
    first = ep.steps[0].reasoning
    assert "alarmclock" in first and "desklamp" in first
    assert len({s.reasoning for s in ep.steps}) == len(ep.steps)
    take = next(s for s in ep.steps if s.action.startswith("take"))
    assert "alarmclock 1" in take.reasoning and "desk 2" in take.reasoning
    # each turn round-trips through the parser the student is evaluated with
    for s in ep.steps:
        p = parse_turn("alfworld", f"Reasoning: {s.reasoning}\nAction: {s.action}\n")
        assert (p.reasoning, p.action, p.valid) == (s.reasoning, s.action, True)


@needs_engine
def test_memoized_grammar_parses_give_what_a_fresh_parse_gives(env):
    """The engine keeps TextWorld's parse trees per string (`alfworld._memoize_parses`): every string
    the game parsed converts to the same objects as a fresh tatsu parse, and each call gets its own."""
    import textworld.envs.pddl.textgen as textgen
    import textworld.logic as logic

    env.reset(options={"task_id": GAME})
    for action in WINNING[:2]:
        env.step(action)
    for module, converter in ((textgen, textgen._Converter), (logic, logic._ModelConverter)):
        assert module._sad_eval_memo
        trees = module._parse_and_convert.__closure__  # the memo is in use: it holds parse trees
        cache = next(c.cell_contents for c in trees if isinstance(c.cell_contents, dict))
        assert len(cache) >= 3
        for (text, rule), _ in list(cache.items())[:200]:
            fresh = converter().walk(module._PARSER.parse(text, rule_name=rule))
            got = module._parse_and_convert(text, rule_name=rule)
            assert repr(got) == repr(fresh)
            again = module._parse_and_convert(text, rule_name=rule)
            if isinstance(got, list) and got:
                assert got[0] is not again[0]  # new objects per call: nothing shared between callers


@needs_engine
def test_the_engine_speedups_leave_every_observation_as_it_was(env):
    """The parse memo and the shared context values (`alfworld.engine`) against TextWorld's own
    functions, restored: the same observations, rewards and admissible commands, step for step."""
    from sad_eval.envs.alfworld import textworld_as_shipped

    def play():
        obs, info = env.reset(options={"task_id": GAME})
        seen = [(obs, tuple(info["admissible_commands"]))]
        for i in range(12):
            cmds = info["admissible_commands"]
            action = WINNING[i] if i < len(WINNING) - 1 else cmds[(7 * i + 3) % len(cmds)]
            obs, reward, term, _, info = env.step(action)
            seen.append((obs, reward, term, tuple(info["admissible_commands"])))
            if term:
                break
        return seen

    fast = play()
    with textworld_as_shipped():
        slow = play()
    assert fast == slow and len(fast) > 5


@needs_engine
def test_translated_games_are_kept_on_disk_and_replay_the_same(data_root, tmp_path, monkeypatch):
    """A game translated by one process is unpickled by the next (fast-downward not called), and
    the episode is the same as with the translator run afresh; a torn file is just a miss."""
    from sad_eval.envs import alfworld

    monkeypatch.setenv("SAD_EVAL_CACHE", str(tmp_path))

    def play(**kw):
        e = alfworld.ALFWorldEnv(data_root=data_root, tasks=[GAME], **kw)
        try:
            obs, info = e.reset(options={"task_id": GAME})
            seen = [(obs, tuple(info["admissible_commands"]))]
            for action in WINNING:
                obs, reward, term, _, info = e.step(action)
                seen.append((obs, reward, term, tuple(info["admissible_commands"])))
            return seen
        finally:
            e.close()

    fresh = play(sas_cache=False)
    assert not alfworld.sas_cache_dir().exists()
    first = play()
    files = sorted(alfworld.sas_cache_dir().glob("*.pkl.z"))
    assert len(files) == 2  # the plain and the optimized translation

    fd = alfworld.engine().fast_downward

    def must_not_translate(*a, **k):
        raise AssertionError("translated again")

    with monkeypatch.context() as mp:
        mp.setattr(fd, "pddl2sas", must_not_translate)
        again = play()
    assert fresh == first == again and again[-1][1] == 1.0
    files[0].write_bytes(b"torn")
    assert play() == fresh
    assert all(alfworld._read_sas(f) is not None for f in files)  # rewritten whole
