"""HotPotQA-ReAct: the offline wiki store, the env's actions and metric, splits, and the oracle."""

from __future__ import annotations

import ast
import json

import pytest

from sad_eval.errors import SadEvalError

# Known questions (all in dev500).
MENOTTI = "5a70f4c45542994082a3e437"  # bridge: Maria Golovin -> Gian Carlo Menotti
BLUE = "5a7c9f325542990527d554e6"  # bridge with lookups on both pages: Innocent Records -> Blue
GUAM = "5a71166d5542994082a3e576"  # comparison: Battle of Manila or Battle of Guam


@pytest.fixture(scope="session")
def store(data_root):
    """The wiki store, built (or loaded from the cache) once per test session."""
    from sad_eval.envs import wiki_store

    return wiki_store.load_store(data_root)


@pytest.fixture
def env(store, data_root):
    from sad_eval.envs.hotpotqa import HotPotQAEnv

    return HotPotQAEnv(split="dev500", data_root=data_root, privileged=True)


def _step(env, action):
    obs, reward, terminated, truncated, info = env.step(action)
    return obs, reward, terminated, truncated, info


# ------------------------------------------------------------------ store


def test_store_covers_every_title(store):
    assert len(store) == 32591
    assert len(store.questions) == 3444
    assert store.meta["sha256"] and store.meta["format"] >= 1


def test_store_exact_title_is_case_and_space_insensitive(store):
    assert store.resolve("Scott Derrickson") == "Scott Derrickson"
    assert store.resolve("  scott   DERRICKSON ") == "Scott Derrickson"
    assert store.resolve("Scott Derricksen") is None
    # case variants: the exact spelling wins
    assert store.resolve("Popular science") == "Popular science"
    assert store.resolve("Popular Science") == "Popular Science"


def test_store_similar_puts_disambiguated_titles_first(store):
    sim = store.similar("Battle of Manila", 5)
    assert len(sim) == 5 and len(set(sim)) == 5
    assert {"Battle of Manila (1945)", "Battle of Manila (1574)"} <= set(sim[:2])
    assert store.similar("the of and", 5) == []  # stop words only: nothing to rank


# ------------------------------------------------------------------ env: actions


def test_reset_observation_is_the_question(env, store):
    obs, info = env.reset(options={"task_id": MENOTTI})
    assert obs == "Question: " + store.questions[MENOTTI]["question"]
    assert info["task_id"] == MENOTTI
    pv = info["privileged"]
    assert pv["answer"] == "Gian Carlo Menotti" and pv["type"] == "bridge"
    assert set(pv["gold_titles"]) == {"Maria Golovin", "Gian Carlo Menotti"}
    obs2, info2 = env.reset(options={"index": 0})
    assert info2["task_id"] == env.task_ids[0]


def test_unknown_task_id(env):
    with pytest.raises(SadEvalError, match="unknown hotpotqa task id"):
        env.reset(options={"task_id": "nope"})


def test_search_exact_title_returns_first_five_sentences(env, store):
    env.reset(options={"task_id": MENOTTI})
    obs, reward, term, trunc, info = _step(env, "Search[  scott   derrickson ]")
    sents = store.sentences_of("Scott Derrickson")
    assert obs == " ".join(s.strip() for s in sents[:5])
    assert obs.startswith("Scott Derrickson (born July 16, 1966) is an American director")
    assert (reward, term, trunc) == (0.0, False, False)
    long = [t for t, s in zip(store.titles, store.sentences) if len(s) > 7][0]
    obs, *_ = _step(env, f"search[{long}]")
    assert obs == " ".join(s.strip() for s in store.sentences_of(long)[:5])


def test_search_miss_lists_similar_titles(env):
    env.reset(options={"task_id": GUAM})
    obs, *_ = _step(env, "search[Battle of Manila]")
    assert obs.startswith("Could not find Battle of Manila. Similar: [")
    similar = ast.literal_eval(obs[len("Could not find Battle of Manila. Similar: "):-1])
    assert len(similar) == 5 and "Battle of Manila (1945)" in similar


def test_lookup_iterates_then_runs_out(env, store):
    env.reset(options={"task_id": MENOTTI})
    # before any search ReAct's env has an empty lookup list
    assert _step(env, "lookup[opera]")[0] == "No more results."
    _step(env, "search[Maria Golovin]")
    hits = [s for s in store.sentences_of("Maria Golovin") if "the" in s.lower()]
    assert len(hits) == 2
    assert _step(env, "lookup[THE]")[0] == f"(Result 1 / 2) {hits[0]}"
    assert _step(env, "lookup[THE]")[0] == f"(Result 2 / 2) {hits[1]}"
    assert _step(env, "lookup[THE]")[0] == "No more results."
    # a new keyword restarts
    assert _step(env, "Lookup[Menotti]")[0] == f"(Result 1 / 1) {store.sentences_of('Maria Golovin')[0]}"


def test_lookup_restarts_when_the_keyword_as_typed_changes(data_root, store):
    """ReAct compares the raw keyword string: the, The, the are three restarts (matching itself
    stays case-insensitive)."""
    from sad_eval.envs.hotpotqa import HotPotQAEnv

    env = HotPotQAEnv(data_root=data_root, max_steps=20, privileged=True)
    env.reset(options={"task_id": MENOTTI})
    env.step("search[Maria Golovin]")
    hits = [s for s in store.sentences_of("Maria Golovin") if "the" in s.lower()]
    assert [env.step(f"lookup[{k}]")[0] for k in ("the", "The", "the")] == [f"(Result 1 / 2) {hits[0]}"] * 3
    assert env.step("lookup[the]")[0] == f"(Result 2 / 2) {hits[1]}"


def test_think_is_answered_like_reacts_env(env):
    env.reset(options={"task_id": MENOTTI})
    obs, reward, term, trunc, info = _step(env, "think[I should search Maria Golovin.]")
    assert (obs, reward, term, trunc) == ("Nice thought.", 0.0, False, False)
    assert info["action"] == "think" and info["steps"] == 1


def test_lookup_restarts_after_a_new_search(data_root, store):
    from sad_eval.envs.hotpotqa import HotPotQAEnv

    env = HotPotQAEnv(data_root=data_root, max_steps=20, privileged=True)
    env.reset(options={"task_id": BLUE})
    env.step("search[Blue]")
    first = env.step("lookup[blue]")[0]
    assert first.startswith("(Result 1 / 6) ")
    env.step("lookup[blue]")
    env.step("search[Blue]")
    assert env.step("lookup[blue]")[0] == first


def test_invalid_actions_do_not_crash(env):
    env.reset(options={"task_id": MENOTTI})
    for action in ("jump around", "search[]", "", "finish", "lookup[ ]"):
        obs, reward, term, trunc, info = _step(env, action)
        assert obs.startswith("Invalid action"), action
        assert (reward, term, trunc) == (0.0, False, False)
        assert info["action"] == "invalid"
    assert info["steps"] == 5


# ------------------------------------------------------------------ env: answer metric


def test_normalize_answer_matches_hotpotqa():
    from sad_eval.envs.hotpotqa import normalize_answer

    assert normalize_answer("The  Yoruba!") == "yoruba"
    assert normalize_answer("An Apple, a Day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("U.S.") == "us"


def test_exact_match_and_f1_hand_worked():
    from sad_eval.envs.hotpotqa import exact_match, f1_score

    assert exact_match("the yoruba.", "Yoruba") == 1.0
    assert exact_match("Yoruba people", "Yoruba") == 0.0
    assert f1_score("Gian Carlo", "Gian Carlo Menotti") == pytest.approx(0.8)  # P=1, R=2/3
    assert f1_score("an apple pie", "Apple") == pytest.approx(2 / 3)  # P=1/2, R=1
    assert f1_score("yes", "no") == 0.0
    assert f1_score("no", "No.") == 1.0
    assert f1_score("yes sir", "yes") == 0.0  # yes/no only score exactly
    assert f1_score("", "Yoruba") == 0.0


def test_finish_scores_em_and_f1(env):
    env.reset(options={"task_id": MENOTTI})
    obs, reward, term, trunc, info = _step(env, "finish[the GIAN carlo menotti.]")
    assert (reward, term, trunc) == (1.0, True, False)
    assert info["em"] == 1.0 and info["f1"] == 1.0 and info["success"] is True and info["score"] == 1.0
    assert info["answer"] == "the GIAN carlo menotti." and info["gold_answer"] == "Gian Carlo Menotti"
    assert info["meta"]["em"] == 1.0 and info["meta"]["type"] == "bridge" and info["meta"]["level"] == "hard"

    env.reset(options={"task_id": MENOTTI})
    obs, reward, term, trunc, info = _step(env, "Finish[Gian Carlo]")
    assert (reward, term) == (0.0, True)
    assert info["em"] == 0.0 and info["f1"] == pytest.approx(0.8) and info["success"] is False
    assert info["meta"]["f1"] == pytest.approx(0.8)


def test_step_cap_truncates_with_zero_score(data_root, store):
    from sad_eval.envs.hotpotqa import HotPotQAEnv

    env = HotPotQAEnv(split="dev500", data_root=data_root, privileged=True, max_steps=3)
    env.reset(options={"task_id": MENOTTI})
    for i in range(2):
        assert _step(env, "search[Maria Golovin]")[3] is False
    obs, reward, term, trunc, info = _step(env, "search[Maria Golovin]")
    assert (term, trunc, reward) == (False, True, 0.0)
    assert info["em"] == 0.0 and info["f1"] == 0.0 and info["success"] is False and info["score"] == 0.0
    assert info["meta"]["em"] == 0.0
    # scored as ReAct's forced finish[]: an empty answer
    assert info["answer"] == "" and info["forced_finish"] is True and info["meta"]["forced_finish"] is True


def test_default_step_cap_is_reacts_seven(env):
    """ReAct's webthink loop gives 7 agent actions, then sends finish[] itself (EM 0)."""
    from sad_eval.envs.hotpotqa import DEFAULT_MAX_STEPS, REACT_MAX_STEPS

    assert env.max_steps == DEFAULT_MAX_STEPS == REACT_MAX_STEPS == 7
    env.reset(options={"task_id": MENOTTI})
    for i in range(6):
        assert _step(env, "search[nothing here at all]")[3] is False
    obs, reward, term, trunc, info = _step(env, "search[nothing here at all]")
    assert trunc is True and info["em"] == 0.0 and info["answer"] == ""
    # the 7th action may still be a real finish
    env.reset(options={"task_id": MENOTTI})
    for i in range(6):
        _step(env, "search[nothing here at all]")
    assert _step(env, "finish[Gian Carlo Menotti]")[1:3] == (1.0, True)


def test_sad_step_cap_flag_gives_eight_actions(data_root, store):
    from sad_eval.envs.hotpotqa import SAD_MAX_STEPS, HotPotQAEnv

    env = HotPotQAEnv(split="dev500", data_root=data_root, privileged=True, max_steps=SAD_MAX_STEPS)
    env.reset(options={"task_id": MENOTTI})
    for i in range(7):
        assert _step(env, "search[nothing here at all]")[3] is False
    assert _step(env, "finish[Gian Carlo Menotti]")[1:3] == (1.0, True)


def test_store_titles_and_text_are_html_unescaped(env, store):
    assert store.resolve("Kenan & Kel") == "Kenan & Kel"
    assert not any("&amp;" in t for t in store.titles)
    assert not any("&amp;" in s for sents in store.sentences for s in sents)
    kel = [q for q, r in store.questions.items() if any(t == "Kenan & Kel" for t, _ in r["supporting_facts"])]
    assert kel and all(store.questions[q]["has_gold"] for q in kel)
    env.reset(options={"task_id": kel[0]})
    obs = _step(env, "search[Kenan & Kel]")[0]
    assert obs.startswith("Kenan & Kel") and "&amp;" not in obs


def test_exact_search_folds_accents_like_wikipedia_redirects(env, store):
    from sad_eval.envs.wiki_store import fold_title

    assert fold_title("Amanda  SØRENSEN") == fold_title("Amanda Sorensen") == "amanda sorensen"
    assert store.resolve("Amon Goth") == "Amon Göth" and store.resolve("amanda sorensen") == "Amanda Sørensen"
    accented = [t for t in store.titles if fold_title(t) != " ".join(t.casefold().split())]
    assert len(accented) > 100
    hit = sum(store.resolve(fold_title(t)) == t for t in accented)
    assert hit >= 0.9 * len(accented)  # the rest collide with another title of the same letters
    env.reset(options={"task_id": MENOTTI})
    t = next(t for t in accented if store.resolve(fold_title(t)) == t)
    assert _step(env, f"search[{fold_title(t)}]")[0] == " ".join(s.strip() for s in store.sentences_of(t)[:5])
    # an exact spelling still wins over a folded one
    assert store.resolve("Popular Science") == "Popular Science"


# ------------------------------------------------------------------ splits


def test_splits_sizes_and_dev500_determinism(data_root, store):
    from sad_eval.envs import hotpotqa

    dev = hotpotqa.list_tasks("dev", data_root)
    a = hotpotqa.list_tasks("dev500", data_root)
    hotpotqa._splits.cache_clear()
    b = hotpotqa.list_tasks("dev500", data_root)
    assert a == b and len(a) == 500 and len(set(a)) == 500 and a == sorted(a)
    assert set(a) <= set(dev) and len(dev) == 1838
    assert len(hotpotqa.list_tasks("train", data_root)) == 908
    react = hotpotqa.list_tasks("react130", data_root)
    assert len(react) == 130 and not set(react) & set(hotpotqa.list_tasks("train", data_root))
    assert {MENOTTI, BLUE, GUAM} <= set(a)
    with pytest.raises(SadEvalError, match="unknown hotpotqa split"):
        hotpotqa.list_tasks("test", data_root)


def test_env_task_ids_and_make_env(data_root, store):
    from sad_eval.envs import make_env
    from sad_eval.envs.hotpotqa import list_tasks

    env = make_env("hotpotqa", split="react130", data_root=data_root)
    assert env.unwrapped.task_ids == list_tasks("react130", data_root)
    obs, info = env.reset(options={"index": 3})
    assert obs.startswith("Question: ")


def test_missing_data_names_the_install_command(tmp_path):
    from sad_eval.envs.hotpotqa import HotPotQAEnv, list_tasks

    with pytest.raises(SadEvalError, match="sad-eval data install"):
        HotPotQAEnv(data_root=tmp_path)
    with pytest.raises(SadEvalError, match="sad-eval data install"):
        list_tasks("dev500", tmp_path)


# ------------------------------------------------------------------ oracle


def _oracle_episode(data_root, task_id):
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs.hotpotqa import HotPotQAEnv
    from sad_eval.harness import run_episode

    env = HotPotQAEnv(split="dev500", data_root=data_root, privileged=True)
    oracle = make_expert("hotpotqa")
    assert oracle.name == "oracle"
    return run_episode(env, oracle, "hotpotqa", task_id, split="dev500")


@pytest.mark.parametrize("task_id", [MENOTTI, BLUE])
def test_oracle_solves_bridge_question_with_segmentable_output(data_root, store, task_id):
    from sad_eval.segment import ACT, REASON, linearize, parse_turn, segment

    ep = _oracle_episode(data_root, task_id)
    gold = store.questions[task_id]["answer"]
    assert ep.status == "ok" and ep.success and ep.score == 1.0
    assert ep.meta["em"] == 1.0 and ep.meta["f1"] == 1.0
    actions = [s.action for s in ep.steps]
    assert actions[-1] == f"finish[{gold}]"
    text = linearize(ep.steps, "hotpotqa")
    spans = segment(text, "hotpotqa")
    assert {s.kind for s in spans} == {REASON, ACT}
    acts = [s for s in spans if s.kind == ACT]
    assert len(acts) == len(ep.steps)
    assert acts[-1].marker == "Answer" and acts[-1].body(text) == gold
    # every turn round-trips through the parser the student's output goes through
    for step in ep.steps:
        from sad_eval.segment import format_turn

        parsed = parse_turn("hotpotqa", format_turn("hotpotqa", step.reasoning, step.action))
        assert parsed.valid and parsed.action == step.action


def test_oracle_bridge_order_and_lookups(data_root):
    ep = _oracle_episode(data_root, BLUE)
    actions = [s.action for s in ep.steps]
    # Blue is not among the first sentences of Innocent Records: a lookup of a question word shows it
    assert actions == ["search[Innocent Records]", "lookup[Platinum]", "lookup[Platinum]", "search[Blue]", "finish[Blue]"]
    assert "Platinum" in ep.prompt
    # the reasoning quotes what the lookup found and names the bridge entity only after it was shown
    assert "Atomic Kitten and Blue achieving Platinum sales" in ep.steps[3].reasoning
    assert "Blue" not in ep.steps[0].reasoning + ep.steps[1].reasoning + ep.steps[2].reasoning
    assert ep.success


def test_oracle_comparison_reasons_about_both(data_root):
    ep = _oracle_episode(data_root, GUAM)
    assert ep.success
    # the question says "Battle of Manila": the disambiguated title comes from the Similar list
    assert [s.action for s in ep.steps[:2]] == ["search[Battle of Manila]", "search[Battle of Manila (1945)]"]
    assert "Similar list offers Battle of Manila (1945)" in ep.steps[1].reasoning
    final = ep.steps[-1].reasoning
    assert "Battle of Manila" in final and "Battle of Guam" in final and "1944" in final and "1945" in final


def test_oracle_respects_a_tight_step_cap(data_root, store):
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs.hotpotqa import HotPotQAEnv
    from sad_eval.harness import run_episode

    env = HotPotQAEnv(split="dev500", data_root=data_root, privileged=True, max_steps=3)
    ep = run_episode(env, make_expert("hotpotqa"), "hotpotqa", BLUE)
    # three actions do not reach Blue from what is shown: it says so and answers from what it found
    assert len(ep.steps) <= 3 and ep.steps[-1].action.startswith("finish[")
    assert ep.steps[0].action == "search[Innocent Records]"
    assert "None of the names I have seen reaches" in ep.steps[-1].reasoning
    assert not _untraceable(ep)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cap", [1, 2])
def test_oracle_finishes_at_step_caps_one_and_two(data_root, store, cap):
    """Issue 20: the old planner's lookup budget went negative at these caps and never returned."""
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs.hotpotqa import HotPotQAEnv
    from sad_eval.harness import run_episode

    env = HotPotQAEnv(split="dev500", data_root=data_root, privileged=True, max_steps=cap)
    for tid in (MENOTTI, BLUE, GUAM):
        ep = run_episode(env, make_expert("hotpotqa"), "hotpotqa", tid)
        assert ep.status == "ok" and 1 <= len(ep.steps) <= cap
        assert ep.steps[-1].action.startswith("finish[")
    ep = run_episode(env, make_expert("hotpotqa"), "hotpotqa", MENOTTI)
    if cap == 2:  # one search, then the answer it showed
        assert [s.action for s in ep.steps] == ["search[Maria Golovin]", "finish[Gian Carlo Menotti]"] and ep.success
    else:
        assert not ep.success


def test_oracle_comparison_of_what_both_share_answers_from_the_page(data_root, store):
    """ "The Polar Bear and Daiquiri are both examples of what?": the answer is stated on a page, it
    is not one of the two names, so it is neither guessed among them nor given unseen."""
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs.hotpotqa import HotPotQAEnv
    from sad_eval.harness import run_episode

    env = HotPotQAEnv(split="dev", data_root=data_root, privileged=True)
    ep = run_episode(env, make_expert("hotpotqa"), "hotpotqa", "5a733c925542991f9a20c6b7")
    assert ep.steps[-1].action == "finish[cocktails]" and ep.success
    assert "family of cocktails" in ep.steps[-1].reasoning and "guess" not in ep.steps[-1].reasoning
    assert not _untraceable(ep)


def test_oracle_needs_privileged_info():
    from sad_eval.agents.base import EpisodeState
    from sad_eval.agents.experts.hotpotqa import make_expert

    with pytest.raises(SadEvalError, match="privileged"):
        make_expert().act([EpisodeState(env="hotpotqa", task_id="x", task="Question: ?")])


def _folded_in(text: str, phrase: str) -> bool:
    from sad_eval.envs.wiki_store import fold_title

    return bool(phrase.strip()) and fold_title(phrase) in fold_title(text)


def _untraceable(ep) -> list[str]:
    """Every search target, lookup keyword, quote and bridge name of the oracle's reasoning must occur
    in the question or an earlier observation (a Similar list counts as shown). Returns the misses."""
    import re

    from sad_eval.agents.experts.hotpotqa import _MARKER

    problems = []
    shown = [ep.prompt]
    for i, s in enumerate(ep.steps):
        text = " ".join(" ".join(shown).split())
        marked = _MARKER.sub(r"\1 -", text)
        similar = [t for o in shown if (m := re.match(r"^Could not find .*\. Similar: (\[.*\])\.$", o, re.S))
                   for t in ast.literal_eval(m.group(1))]
        m = re.match(r"^(search|lookup|finish)\[(.*)\]$", s.action, re.S)
        verb, arg = m.groups()
        if verb == "search" and not (arg in similar or _folded_in(text, arg)):
            problems.append(f"step {i}: search target {arg!r} was never shown")
        if verb == "lookup" and arg.lower() not in text.lower():
            problems.append(f"step {i}: lookup keyword {arg!r} was never shown")
        if verb == "finish" and arg.lower() not in ("yes", "no", "unknown") and not _folded_in(text, arg):
            problems.append(f"step {i}: answer {arg!r} was never shown")
        for body in re.findall(r'says: "(.*?)(?:"[ .]|"$|$)', s.reasoning):
            for frag in body.split("..."):
                if frag.strip() and " ".join(frag.split()) not in marked:
                    problems.append(f"step {i}: quote {frag.strip()[:60]!r} was never shown")
        for name in re.findall(r"(?:leads to|list offers|question also names|page names) (.+?)(?:\. I |, so I )",
                               s.reasoning):
            if not (name in similar or _folded_in(text, name)):
                problems.append(f"step {i}: name {name!r} was never shown")
        if "links this to" in s.reasoning:
            problems.append(f"step {i}: claims a link it never saw")
        shown.append(s.observation)
    return problems


@pytest.fixture(scope="module")
def dev_slice(data_root, store):
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs.hotpotqa import HotPotQAEnv
    from sad_eval.harness import run_episode

    env = HotPotQAEnv(split="dev500", data_root=data_root, privileged=True)
    oracle = make_expert("hotpotqa")
    return [run_episode(env, oracle, "hotpotqa", t) for t in env.task_ids[:150]]


def test_oracle_on_a_slice_of_dev500(dev_slice):
    """A quick regression guard; the full dev500 number is in docs/hotpotqa.md."""
    eps = dev_slice
    assert sum(e.meta["em"] for e in eps) >= 0.96 * len(eps)
    assert all(len(e.steps) <= 7 and e.steps[-1].action.startswith("finish[") for e in eps)
    from sad_eval.segment import ACT, REASON, format_turn, segment

    for e in eps:  # each turn is exactly one REASON span and one ACT span
        for s in e.steps:
            assert [sp.kind for sp in segment(format_turn("hotpotqa", s.reasoning, s.action), "hotpotqa")] == [REASON, ACT]


def test_oracle_reasons_only_from_what_was_shown(dev_slice):
    """Issue 16: every search target and every claim traceable to the question or an earlier
    observation, over many episodes (the old oracle searched 21% of its targets blind)."""
    problems = {e.task_id: p for e in dev_slice if (p := _untraceable(e))}
    assert not problems, problems
    searches = [s for e in dev_slice for s in e.steps if s.action.startswith("search[")]
    assert len(searches) > 1.5 * len(dev_slice)
    # the Similar list is really used: some targets are only reachable through it
    assert sum("Similar list offers" in s.reasoning for s in searches) >= 0.1 * len(dev_slice)


def test_untraceable_check_catches_a_blind_search(dev_slice):
    import copy

    ep = copy.deepcopy(next(e for e in dev_slice if len(e.steps) >= 3))
    ep.steps[0].action = "search[Xyloband]"
    ep.steps[1].reasoning = 'The page says: "a sentence nobody showed". So it leads to Xyloband. I will search it.'
    problems = _untraceable(ep)
    assert any("search target 'Xyloband'" in p for p in problems)
    assert any("quote" in p for p in problems) and any("name 'Xyloband'" in p for p in problems)


def test_oracle_quotes_cannot_add_transcript_markers():
    from sad_eval.agents.experts.hotpotqa import _quote

    assert _quote('the album "Healthy Food For Thought: Good Enough To Eat"') == (
        'the album "Healthy Food For Thought - Good Enough To Eat"')


# ------------------------------------------------------------------ exemplars


def test_build_exemplars_cached(data_root, store, tmp_path, monkeypatch):
    from sad_eval.agents.experts import hotpotqa as expert

    path = tmp_path / "exemplars.json"
    ex = expert.build_exemplars(data_root, k=4, cache_path=path)
    assert len(ex) == 4
    for e in ex:
        assert e.startswith("Question: ")
        assert "Reasoning: " in e and "Action: search[" in e and "\nAnswer: " in e
        assert "Episode finished" not in e
    cached = json.loads(path.read_text())
    assert cached["exemplars"] == ex and len(cached["task_ids"]) == 4
    train = set(__import__("sad_eval.envs.hotpotqa", fromlist=["x"]).list_tasks("train", data_root))
    assert set(cached["task_ids"]) <= train
    # a second call reads the cache (no episodes run)
    monkeypatch.setattr("sad_eval.harness.run_episode", lambda *a, **k: pytest.fail("not cached"))
    assert expert.build_exemplars(data_root, k=4, cache_path=path) == ex


def test_react_exemplars(data_root):
    from sad_eval.agents.experts.hotpotqa import react_exemplars

    text = react_exemplars(data_root)
    assert text.count("Question:") == 6 and "Search[" in text and "Finish[" in text
