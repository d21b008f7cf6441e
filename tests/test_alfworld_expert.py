"""ALFWorld teacher reasoning on synthetic states (no engine needed), exemplars."""

from __future__ import annotations

import json

import pytest

from sad_eval.agents.base import EpisodeState
from sad_eval.agents.experts.alfworld import ALFWorldTeacher, make_expert, objects_in, react_exemplars
from sad_eval.errors import SadEvalError
from sad_eval.segment import ACT, REASON, segment
from sad_eval.trajectory import Step

pytestmark = pytest.mark.alfworld

ROOM = ("You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a countertop 1, "
        "a fridge 1, a microwave 1, a sinkbasin 1, and a coffeemachine 1.\nYour task is to: {goal}.")
TASKS = {
    "pick_and_place_simple": ({"object_target": "mug", "parent_target": "coffeemachine"}, "put some mug on coffeemachine"),
    "pick_clean_then_place_in_recep": ({"object_target": "mug", "parent_target": "coffeemachine"},
                                       "put a clean mug in coffeemachine"),
    "pick_heat_then_place_in_recep": ({"object_target": "mug", "parent_target": "coffeemachine"},
                                      "put a hot mug in coffeemachine"),
    "pick_cool_then_place_in_recep": ({"object_target": "mug", "parent_target": "coffeemachine"},
                                      "put a cool mug in coffeemachine"),
    "look_at_obj_in_light": ({"object_target": "mug", "toggle_target": "desklamp"}, "look at mug under the desklamp"),
    "pick_two_obj_and_place": ({"object_target": "mug", "parent_target": "cabinet"}, "find two mug and put them in cabinet"),
}


def state(task_type: str, expert_action: str, steps: list[tuple[str, str]] = ()) -> EpisodeState:
    params, goal = TASKS[task_type]
    task = ROOM.format(goal=goal)
    info = {"task_type": task_type, "privileged": {
        "expert_action": expert_action, "expert_plan": [expert_action],
        "task_params": {"task_type": task_type, **params},
        "search_priors": ["cabinet", "countertop", "sinkbasin", "microwave"]}}
    return EpisodeState(env="alfworld", task_id="t", task=task, observation=task, info=info,
                        steps=[Step(reasoning="", action=a, observation=o) for a, o in steps])


def test_objects_in():
    assert objects_in("On the countertop 1, you see a apple 1, a mug 2, and a knife 1.") == ["apple 1", "mug 2", "knife 1"]
    assert objects_in("You open the fridge 1. The fridge 1 is open. In it, you see a egg 2.") == ["egg 2"]
    assert objects_in("On the shelf 1, you see nothing.") == []
    assert objects_in("You pick up the mug 1 from the countertop 1.") is None


def test_plan_differs_per_task_type():
    teacher = make_expert()
    plans = {t: teacher.act([state(t, "look")])[0].reasoning for t in TASKS}
    assert len(set(plans.values())) == len(TASKS)
    assert "clean it with the sinkbasin" in plans["pick_clean_then_place_in_recep"]
    assert "heat it with the microwave" in plans["pick_heat_then_place_in_recep"]
    assert "cool it with the fridge" in plans["pick_cool_then_place_in_recep"]
    assert "turn it on" in plans["look_at_obj_in_light"]
    assert "two mugs" in plans["pick_two_obj_and_place"]
    # the search prior only names receptacle kinds that are in this room
    assert "A mug is most likely in or on a cabinet, countertop, sinkbasin or microwave." in plans["pick_and_place_simple"]
    assert all("\n" not in p for p in plans.values())


def test_reasoning_follows_progress():
    teacher = ALFWorldTeacher()
    t = "pick_clean_then_place_in_recep"
    steps = [("look", "You are in the middle of a room. Looking quickly around you, you see nothing.")]
    r = teacher.act([state(t, "go to countertop 1", steps)])[0]
    assert r.action == "go to countertop 1"
    assert "a mug is often on a countertop, so I'll check the countertop 1" in r.reasoning
    steps.append(("go to countertop 1", "On the countertop 1, you see a apple 1, and a mug 2."))
    r = teacher.act([state(t, "take mug 2 from countertop 1", steps)])[0]
    assert r.reasoning.startswith("I see a mug 2 on the countertop 1.")
    assert "clean it with the sinkbasin" in r.reasoning
    steps.append(("take mug 2 from countertop 1", "You pick up the mug 2 from the countertop 1."))
    r = teacher.act([state(t, "go to sinkbasin 1", steps)])[0]
    assert r.reasoning == "I'm holding the mug 2 now. Next I need to clean the mug 2, so I'll go to the sinkbasin 1."
    steps += [("go to sinkbasin 1", "On the sinkbasin 1, you see nothing."),
              ("clean mug 2 with sinkbasin 1", "You clean the mug 2 using the sinkbasin 1.")]
    r = teacher.act([state(t, "go to coffeemachine 1", steps)])[0]
    assert r.reasoning.startswith("The mug 2 is clean now.") and "coffeemachine 1" in r.reasoning
    steps.append(("go to coffeemachine 1", "On the coffeemachine 1, you see nothing."))
    r = teacher.act([state(t, "put mug 2 in/on coffeemachine 1", steps)])[0]
    assert "completes the task" in r.reasoning


def test_search_reports_what_was_found_and_closed():
    teacher = ALFWorldTeacher()
    t = "pick_heat_then_place_in_recep"
    steps = [("look", "You are in the middle of a room. Looking quickly around you, you see nothing."),
             ("go to cabinet 1", "The cabinet 1 is closed.")]
    r = teacher.act([state(t, "open cabinet 1", steps)])[0].reasoning
    assert r == "The cabinet 1 is closed. I'll open the cabinet 1 to see what is inside."
    steps.append(("open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see a plate 1."))
    r = teacher.act([state(t, "close cabinet 1", steps)])[0].reasoning
    assert r.startswith("There is no mug in the cabinet 1.")
    steps.append(("close cabinet 1", "You close the cabinet 1."))
    steps.append(("go to fridge 1", "The fridge 1 is closed."))
    steps.append(("open fridge 1", "You open the fridge 1. The fridge 1 is open. In it, you see a mug 1."))
    steps.append(("close fridge 1", "You close the fridge 1."))
    r = teacher.act([state(t, "go to fridge 1", steps)])[0].reasoning
    assert r == "I saw a mug 1 in the fridge 1 earlier, so I'll go back there."


def test_pick_two_counts_placements():
    teacher = ALFWorldTeacher()
    t = "pick_two_obj_and_place"
    steps = [("go to countertop 1", "On the countertop 1, you see a mug 1, and a mug 2."),
             ("take mug 1 from countertop 1", "You pick up the mug 1 from the countertop 1."),
             ("go to cabinet 1", "The cabinet 1 is open. In it, you see nothing.")]
    assert "first of two" in teacher.act([state(t, "put mug 1 in/on cabinet 1", steps)])[0].reasoning
    steps.append(("put mug 1 in/on cabinet 1", "You put the mug 1 in/on the cabinet 1."))
    r = teacher.act([state(t, "go to countertop 1", steps)])[0].reasoning
    assert "I still need a second one" in r and "I saw a mug 2 on the countertop 1 earlier" in r


def test_needs_privileged_info():
    s = state("pick_and_place_simple", "look")
    s.info.pop("privileged")
    with pytest.raises(SadEvalError, match="privileged=True"):
        ALFWorldTeacher().act([s])
    with pytest.raises(SadEvalError):
        make_expert(temperature=1.0)


def test_react_exemplars(data_root):
    for task_type in TASKS:
        ex = react_exemplars(task_type, data_root)
        assert len(ex) == 3
        text = ex[0]
        assert text.startswith("You are in the middle of a room.") and "Your task is to:" in text
        assert "> " not in text and "think:" not in text
        kinds = [s.kind for s in segment(text, "alfworld")]
        assert kinds and kinds == [REASON, ACT] * (len(kinds) // 2)
    with pytest.raises(SadEvalError):
        react_exemplars("juggle")


def test_build_exemplars_reads_cache(tmp_path, monkeypatch):
    from sad_eval.agents.experts import alfworld

    monkeypatch.setenv("SAD_EVAL_CACHE", str(tmp_path))
    path = alfworld.exemplar_cache()
    assert path == tmp_path / "exemplars" / "alfworld.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": alfworld.EXEMPLAR_VERSION, "per_type": 2, "max_steps": 30,
                                "exemplars": {"pick_and_place_simple": ["a", "b"]}}))
    assert alfworld.build_exemplars(per_type=1) == {"pick_and_place_simple": ["a"]}


@pytest.mark.slow
def test_build_exemplars_from_train(tmp_path, monkeypatch, data_root):
    from sad_eval.agents.experts import alfworld
    from sad_eval.envs.alfworld import TASK_TYPES

    monkeypatch.setenv("SAD_EVAL_CACHE", str(tmp_path))
    ex = alfworld.build_exemplars(data_root=data_root, per_type=1)
    assert set(ex) == set(TASK_TYPES) and all(len(v) == 1 for v in ex.values())
    for texts in ex.values():
        assert "Your task is to:" in texts[0] and "Reasoning: " in texts[0] and "Observation: " in texts[0]
    assert json.loads(alfworld.exemplar_cache().read_text())["per_type"] == 1
