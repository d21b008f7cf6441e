import math

import pytest

from sad_eval import metrics as M
from sad_eval.trajectory import Episode, Step


def ep(task, reasoning_lengths, success=True, env="alfworld", **kw):
    steps = [Step(" ".join(f"w{i}" for i in range(n)), "look", "ok", latency_s=0.5) for n in reasoning_lengths]
    return Episode(env=env, split="s", task_id=task, agent="a", success=success, steps=steps, **kw)


def test_paper_arl_example_12_15_14():
    eps = [ep("a", [12]), ep("b", [10, 5]), ep("c", [7, 7])]
    assert M.average_reasoning_length(eps) == pytest.approx(13.6667, abs=1e-4)


def test_paper_cot_example_teacher_9_overlap_6():
    teacher = "the fridge is likely in the kitchen so go".split()  # 9 tokens
    student = "the fridge is likely in the the hall".split()  # 6 shared: 'the' x3 clipped to 2
    assert len(teacher) == 9
    assert M.cot_overlap(student, teacher) == pytest.approx(6 / 9)
    t = Episode("alfworld", "s", "t1", "teacher", steps=[Step(" ".join(teacher), "x")])
    s = Episode("alfworld", "s", "t1", "student", steps=[Step(" ".join(student), "x")])
    rate, pairs = M.cot_match_rate([s], [t])
    assert pairs == 1 and rate == pytest.approx(66.667, abs=1e-3)


def test_cot_multiset_is_clipped_and_unpaired_left_out():
    assert M.cot_overlap(["a", "a", "a"], ["a", "b"]) == 0.5
    t = Episode("alfworld", "s", "t1", "teacher", steps=[Step("a b", "x")])
    s1 = Episode("alfworld", "s", "t1", "st", steps=[Step("a", "x")])
    s2 = Episode("alfworld", "s", "other", "st", steps=[Step("a b", "x")])
    rate, pairs = M.cot_match_rate([s1, s2], [t])
    assert pairs == 1 and rate == pytest.approx(50.0)


def test_tsr_latency_and_errored_episodes_are_excluded():
    eps = [ep("a", [3, 3], True), ep("b", [3], False), ep("c", [1], False, status="error")]
    assert M.task_success_rate(eps) == 50.0
    assert M.latency_steps(eps) == 1.5
    assert M.latency_seconds(eps) == pytest.approx(0.75)
    assert M.latency_seconds_per_step(eps) == pytest.approx(0.5)
    s = M.summarize(eps)
    assert s["episodes"] == 2 and s["errored"] == 1


def test_word_tokenizer_counts_body_not_marker():
    assert M.word_tokens("Go to the Kitchen, now!") == ["go", "to", "the", "kitchen", ",", "now", "!"]
    e = Episode("alfworld", "s", "t", "a", steps=[Step("I look.", "look")])
    assert M.reasoning_tokens(e) == ["i", "look", "."]


def test_env_scores():
    w = [Episode("webshop", "s", str(i), "a", score=sc) for i, sc in enumerate([1.0, 0.5])]
    assert M.summarize(w)["webshop_score"] == 75.0
    h = [Episode("hotpotqa", "s", "q", "a", meta={"em": 1.0, "f1": 1.0}),
         Episode("hotpotqa", "s", "r", "a", meta={"em": 0.0, "f1": 0.5})]
    s = M.summarize(h)
    assert s["hotpotqa_em"] == 50.0 and s["hotpotqa_f1"] == 75.0


def test_empty_gives_nan():
    assert math.isnan(M.task_success_rate([]))


def test_invalid_turns_split_into_runaways_and_missing_actions():
    steps = [Step("r", "go to desk 1"),  # valid
             Step("r", "Reasoning: r", invalid=True, tokens=12),  # stopped early: no action line
             Step("1999…", "Reasoning: 1999…", invalid=True, tokens=64),  # used the whole budget
             Step("r", "go", tokens=64)]  # a long but valid turn is not a runaway
    e = Episode("alfworld", "s", "t", "student", steps=steps)
    kinds = M.invalid_turn_kinds([e], max_new_tokens=64)
    assert kinds == {"runaway_rate": 25.0, "no_action_rate": 25.0}
    assert kinds["runaway_rate"] + kinds["no_action_rate"] == M.invalid_action_rate([e])
    out = M.summarize([e], max_new_tokens=64)
    assert out["no_action_rate"] == 25.0 and "runaway_rate" not in M.summarize([e])


def test_rejected_actions_are_well_formed_actions_the_env_refused():
    alf = Episode("alfworld", "s", "t", "student", steps=[
        Step("r", "go to shelf 11", observation="Nothing happens."),  # no shelf 11 in this room
        Step("r", "go to desk 1", observation="On the desk 1, you see a pen 1."),
        Step("1999…", "Reasoning: 1999…", observation="Nothing happens.", invalid=True)])  # counted in Inv, not here
    web = Episode("webshop", "s", "u", "student", steps=[
        Step("r", "click[Buy Now]", observation="Invalid action: [Buy Now] is not on this page. You can click: nothing."),
        Step("r", "search[pillow]", observation="[Back to Search] Page 1 (Total results: 50)")])
    assert M.rejected_action_rate([alf]) == 50.0
    assert M.rejected_action_rate([alf, web]) == 50.0
    assert M.summarize([web])["rejected_rate"] == 50.0
    assert math.isnan(M.rejected_action_rate([Episode("alfworld", "s", "v", "student")]))


def test_rejection_is_the_envs_typed_flag_with_the_text_rule_only_for_old_files():
    """New steps carry the env's `info["rejected"]` (`Step.rejected`): it wins over any text (WebShop's
    `simple` pages answer a refused click with the page itself, which the text rule missed). Steps of
    files written before the flag (`rejected` None) fall back to the env's old wording."""
    web = Episode("webshop", "s", "u", "student", steps=[
        Step("r", "click[nothing]", observation="WebShop [SEP] Instruction: [SEP] ...", rejected=True),
        Step("r", "search[x]", observation="Invalid action is a product name here", rejected=False)])
    assert M.rejected_action_rate([web]) == 50.0
    old = Episode.from_dict({"env": "alfworld", "task_id": "t", "steps": [
        {"reasoning": "r", "action": "go to shelf 11", "observation": "Nothing happens."},
        {"reasoning": "r", "action": "look", "observation": "You are in the middle of a room."}]})
    assert [s.rejected for s in old.steps] == [None, None]
    assert M.rejected_action_rate([old]) == 50.0
    unknown = Episode("someenv", "s", "t", "a", steps=[Step("r", "x", observation="Nothing happens.")])
    assert math.isnan(M.rejected_action_rate([unknown]))  # old file, no rule known: left out
    assert Episode.from_dict(web.to_dict()).steps[0].rejected is True  # recorded in the JSONL
