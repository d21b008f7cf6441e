"""Issue 16: every claim in the ALFWorld teacher's reasoning is true of what the episode showed.

`false_claims` re-reads an episode from its observations alone (independently of the teacher's own
memory) and checks each claim of each turn's reasoning against what was shown before that turn:
what is or is not at a receptacle, what is held, revisits acknowledged, no hope of finding
something where it was already seen missing, no "to get my bearings" filler, no goal purpose for
an object the task does not name. The replay test runs the teacher on real train games.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

from sad_eval.trajectory import Step

pytestmark = pytest.mark.alfworld
needs_engine = pytest.mark.skipif(
    importlib.util.find_spec("textworld") is None or importlib.util.find_spec("alfworld") is None,
    reason="ALFWorld engine not installed (`make setup`)",
)

_ACK = re.compile(r"\b(again|back|before|earlier|already)\b")
_ITEMS = re.compile(r",\s*(?:and\s+)?|\s+and\s+")


def _listed(obs: str) -> list[str] | None:
    m = re.search(r"you see (.*?)\.?$", obs, re.S)
    if not m:
        return None
    body = m.group(1).strip()
    if body.startswith("nothing"):
        return []
    return [re.sub(r"^(?:a|an|the|some)\s+", "", i.strip()) for i in _ITEMS.split(body) if i.strip()]


def _cls(name: str) -> str:
    return name.rsplit(" ", 1)[0] if name[-1:].isdigit() else name


def false_claims(task: str, steps) -> list[str]:
    """The claims of each turn's reasoning that what the episode showed before it contradicts."""
    problems: list[str] = []
    loc, visited, closed, holding, held_from = "", set(), set(), "", ""
    contents: dict[str, list[str]] = {}  # last seen objects per receptacle
    ever: dict[str, list[str]] = {}  # every object ever seen there
    goal = re.search(r"Your task is to: (.*)", task)
    goal_words = set(re.findall(r"\w+", goal.group(1).lower())) if goal else set()
    for i, s in enumerate(steps):
        r, a, o = s.reasoning, s.action, s.observation
        at = f"step {i} ({a!r})"
        for obj, rec in re.findall(r"There is no (\w+) (?:in|on) the (\w+ \d+)", r):
            if contents.get(rec) is None or any(_cls(x) == obj for x in contents[rec]):
                problems.append(f"{at}: 'no {obj} at {rec}' but it showed {contents.get(rec)}")
        for rec in re.findall(r"The (\w+ \d+) is empty", r):
            if contents.get(rec) != []:
                problems.append(f"{at}: '{rec} is empty' but it showed {contents.get(rec)}")
        for rec in re.findall(r"The (\w+ \d+) is closed", r):
            if rec not in closed:
                problems.append(f"{at}: '{rec} is closed' never shown")
        for objs, rec in re.findall(r"I see ((?:an? \w+ \d+(?:, | and )?)+) (?:in|on) the (\w+ \d+)", r):
            for obj in re.findall(r"an? (\w+ \d+)", objs):
                if obj not in contents.get(rec, []):
                    problems.append(f"{at}: 'I see {obj} at {rec}' not shown")
        for objs, rec in re.findall(r"I saw ((?:an? \w+(?: \d+)?(?:, | and )?)+) (?:in|on) the (\w+ \d+)", r):
            for obj in re.findall(r"an? (\w+(?: \d+)?)", objs):
                if not any(x == obj or _cls(x) == obj for x in ever.get(rec, [])):
                    problems.append(f"{at}: 'I saw {obj} at {rec}' not shown")
        for obj, rec in re.findall(r"the (\w+) I saw (?:in|on) the (\w+ \d+)", r):
            if not any(_cls(x) == obj for x in ever.get(rec, [])):
                problems.append(f"{at}: 'the {obj} I saw at {rec}' not shown")
        for obj in re.findall(r"I'm holding the (\w+ \d+)", r):
            if holding != obj:
                problems.append(f"{at}: 'holding {obj}' but holding {holding!r}")
        for rec in re.findall(r"go back to the (\w+ \d+)", r):
            if rec not in visited and rec != held_from:
                problems.append(f"{at}: 'go back to {rec}', never there")
        for obj, rec in re.findall(r"put the (\w+ \d+) back (?:in|on) the (\w+ \d+)", r):
            if rec != held_from:
                problems.append(f"{at}: 'put {obj} back at {rec}' but it came from {held_from!r}")
        if a.startswith("take ") and _cls(" ".join(a.split()[1:3])) not in goal_words and ", then" in r:
            problems.append(f"{at}: gives a goal purpose to the {a.split()[1]}, which the task does not name")
        if "get my bearings" in r:
            problems.append(f"{at}: 'to get my bearings' filler")
        if a.startswith("go to "):
            dest = a[len("go to "):]
            if dest in visited and not _ACK.search(r):
                problems.append(f"{at}: revisit of {dest} not acknowledged")
            if dest in contents and re.search(rf"(?:look for one at|I'll check) the {re.escape(dest)}\b", r) \
                    and not _ACK.search(r):
                problems.append(f"{at}: hopes to find something at {dest}, already seen with {contents[dest]}")
        # what this step showed
        if o.startswith("Nothing happens"):
            continue
        if a.startswith("go to "):
            loc = a[len("go to "):]
            visited.add(loc)
        if "is closed" in o and loc:
            closed.add(loc)
        listed = _listed(o)
        if listed is not None and loc and not o.startswith("You are facing"):
            contents[loc] = listed
            ever.setdefault(loc, []).extend(listed)
        if m := re.match(r"You pick up the (\w+ \d+) from the (\w+ \d+)", o):
            holding, held_from = m.group(1), m.group(2)
            contents[m.group(2)] = [x for x in contents.get(m.group(2), []) if x != holding]
        elif m := re.match(r"You put the (\w+ \d+) in/on the (\w+ \d+)", o):
            contents.setdefault(m.group(2), []).append(m.group(1))
            holding, held_from = "", ""
    return problems


# Train games whose teacher episodes used to carry false claims (measured on the first 40 train
# games: 35 in 20 episodes), one per kind: a desklamp looked for where it was seen missing (CD-327),
# a non-goal object taken "to turn the lamp on" and "put back" where it was never taken from
# (Bowl-304), filler looks and an unacknowledged revisit (Candle-427), an unacknowledged return
# to the goal receptacle (KeyChain-Sofa-225).
GAMES = [
    "valid_train/look_at_obj_in_light-CD-None-DeskLamp-327/trial_T20190909_032921_008718",
    "valid_train/look_at_obj_in_light-Bowl-None-DeskLamp-304/trial_T20190907_232227_752681",
    "valid_train/pick_and_place_simple-Candle-None-Toilet-427/trial_T20190909_030427_604487",
    "valid_train/pick_and_place_simple-KeyChain-None-Sofa-225/trial_T20190908_131129_251514",
]


@needs_engine
def test_teacher_claims_are_true_of_what_was_shown_on_real_games(data_root):
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs import make_env
    from sad_eval.harness import run_episode

    env = make_env("alfworld", split="train", data_root=data_root, privileged=True, max_steps=50)
    try:
        eps = [run_episode(env, make_expert("alfworld"), "alfworld", g, split="train") for g in GAMES]
    finally:
        env.close()
    assert all(e.success for e in eps)
    problems = {e.task_id: p for e in eps if (p := false_claims(e.prompt, e.steps))}
    assert not problems, problems
    turns = [s for e in eps for s in e.steps]
    revisits = sum(1 for e in eps for i, s in enumerate(e.steps) if s.action.startswith("go to ")
                   and s.action in [x.action for x in e.steps[:i]])
    assert len(turns) > 60 and revisits >= 5  # the check had something to check


def _steps(*triples):
    return [Step(reasoning=r, action=a, observation=o) for r, a, o in triples]


TASK = ("You are in the middle of a room. Looking quickly around you, you see a shelf 1, a shelf 2, "
        "and a desk 1.\nYour task is to: look at cd under the desklamp.")


def test_checker_catches_the_old_false_claims():
    """Each kind of claim the old teacher made is caught (so the replay test can fail)."""
    eps = _steps(
        ("First I'll look around.", "look", "You are in the middle of a room. Looking quickly around you, you see nothing."),
        ("I'll check the shelf 1.", "go to shelf 1", "On the shelf 1, you see a creditcard 1."),
        ("There is no cd on the shelf 1. I'll look around to get my bearings.", "look",
         "You are facing the shelf 1. Next to it, you see nothing."),
        ("I'll take the pen 1, then go to the desklamp I saw on the shelf 2 and turn it on.",
         "take pen 1 from desk 1", "You pick up the pen 1 from the desk 1."),
        ("I'm holding the pen 1 now. I'm holding the pen 1, which I don't need; I'll go back to the shelf 2 "
         "to put it down.", "go to shelf 2", "On the shelf 2, you see a cd 1."),
        ("I see a cd 1 on the shelf 2. I'll put the pen 1 back on the shelf 2.", "put pen 1 in/on shelf 2",
         "You put the pen 1 in/on the shelf 2."),
        ("I'll take the cd 1, then find a desklamp and turn it on.", "take cd 1 from shelf 2",
         "You pick up the cd 1 from the shelf 2."),
        ("I'm holding the cd 1 now. Now I need a desklamp; I'll look for one at the shelf 1.", "go to shelf 1",
         "On the shelf 1, you see a creditcard 1."),
    )
    found = " | ".join(false_claims(TASK, eps))
    for kind in ("get my bearings", "goal purpose to the pen", "the desklamp I saw at shelf 2",
                 "'go back to shelf 2', never there", "'put pen 1 back at shelf 2'",
                 "revisit of shelf 1 not acknowledged", "hopes to find something at shelf 1"):
        assert kind in found, kind
    assert "holding" not in found  # the true claims pass


def test_teacher_acknowledges_a_place_seen_without_the_lamp():
    from sad_eval.agents.base import EpisodeState
    from sad_eval.agents.experts.alfworld import ALFWorldTeacher

    steps = _steps(
        ("", "go to shelf 1", "On the shelf 1, you see a creditcard 1."),
        ("", "go to shelf 2", "On the shelf 2, you see a cd 1."),
        ("", "take cd 1 from shelf 2", "You pick up the cd 1 from the shelf 2."),
    )
    info = {"privileged": {"expert_action": "go to shelf 1", "task_params": {
        "task_type": "look_at_obj_in_light", "object_target": "cd", "toggle_target": "desklamp"},
        "search_priors": ["shelf", "desk"]}}
    st = EpisodeState(env="alfworld", task_id="t", task=TASK, observation=steps[-1].observation, info=info,
                      steps=steps)
    r = ALFWorldTeacher().act([st])[0].reasoning
    assert "There was none on the shelf 1 when I looked before" in r
    assert "look for one at the shelf 1" not in r
    assert not false_claims(TASK, steps + _steps((r, "go to shelf 1", "On the shelf 1, you see a creditcard 1.")))
