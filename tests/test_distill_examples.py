"""Training sequences: the context is what `build_context` renders; targets are the assistant turns."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest

from sad_eval.agents.prompts import build_context
from sad_eval.distill.examples import build_examples, episode_examples
from sad_eval.segment import format_turn
from sad_eval.trajectory import load_trajectories

FIXTURE = Path(__file__).parent / "data" / "distill_teacher.jsonl"


@pytest.fixture(scope="module")
def episodes():
    return load_trajectories([FIXTURE])


def _build(episodes, tok, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_examples(episodes, tok, **kw)


def test_fixture_covers_three_envs_and_a_failure(episodes):
    assert {e.env for e in episodes} == {"alfworld", "webshop", "hotpotqa"}
    assert any(not e.success for e in episodes)
    for e in episodes:
        if e.env == "hotpotqa":
            assert e.steps[-1].action.startswith("finish[")


@pytest.mark.parametrize("seq_len,reserve", [(4096, 128), (512, 128), (512, 0)])
def test_context_is_build_context_and_targets_are_the_turns(episodes, smol_tokenizer, seq_len, reserve):
    tok = smol_tokenizer
    examples, stats = _build(episodes, tok, seq_len=seq_len, reserve=reserve)
    by_key = {(e.task_id, e.sample): e for e in episodes}
    checked = 0
    for ex in examples:
        ep = by_key[(ex.task_id, ex.sample)]
        first = ep.steps[ex.turn_tokens[0][0]] if ex.turn_tokens else None
        excess = 0 if first is None else max(0, len(tok(format_turn(ep.env, first.reasoning, first.action),
                                                         add_special_tokens=False)["input_ids"]) - reserve)
        assert len(ex.input_ids) <= seq_len + excess  # only an over-budget target goes past seq_len
        target_pos = {i for i, (r, a) in enumerate(zip(ex.m_reason, ex.m_act)) if r or a}
        turn_pos = set()
        for turn, t0, t1 in ex.turn_tokens:
            turn_pos |= set(range(t0, t1))
            step = ep.steps[turn]
            content = format_turn(ep.env, step.reasoning, step.action)
            assert tok.decode(ex.input_ids[t0:t1]) == content
            if ex.truncated:
                continue
            _, ctx = build_context(ep.env, ep.prompt, ep.steps[:turn], tok, chat=True, max_tokens=seq_len,
                                   add_generation_prompt=True, reserve=reserve)
            # the tokens before the turn are exactly the harness's context, tokenized on its own
            assert ex.input_ids[:t0] == tok(ctx.text, add_special_tokens=False)["input_ids"]
            checked += 1
        assert target_pos == turn_pos  # every target token is an assistant-turn token and vice versa
        assert not any(r and a for r, a in zip(ex.m_reason, ex.m_act))
    assert checked >= 20
    # every turn of every used episode is a target exactly once
    turns = sorted((ex.task_id, t) for ex in examples for t, _, _ in ex.turn_tokens)
    want = sorted((e.task_id, i) for e in episodes if e.success for i in range(len(e.steps)))
    assert turns == want
    assert stats.used == 6 and stats.skipped_failed == 1


def test_windows_pack_turns_and_elide_old_observations(episodes, smol_tokenizer):
    examples, _ = _build(episodes, smol_tokenizer, seq_len=512, reserve=128)
    long_ep = [ex for ex in examples if ex.task_id.startswith("train/pick_clean")]
    assert len(long_ep) > 1 and len(long_ep[0].turns) > 1  # several windows, the first packs turns
    later = smol_tokenizer.decode(long_ep[1].input_ids)
    assert "Observation: [earlier observation elided]" in later
    single, _ = _build(episodes, smol_tokenizer, seq_len=8192)
    assert len(single) == 6 and all(len(ex.turns) == len(ep.steps) for ex, ep in
                                    zip(single, [e for e in episodes if e.success]))


def test_only_success_is_an_option(episodes, smol_tokenizer):
    _, stats = _build(episodes, smol_tokenizer, seq_len=4096)
    assert stats.skipped_failed == 1
    with pytest.warns(UserWarning, match="skipped 1 failed"):
        build_examples(episodes, smol_tokenizer, seq_len=4096)
    ex_all, stats_all = _build(episodes, smol_tokenizer, seq_len=4096, only_success=False)
    assert stats_all.skipped_failed == 0 and len(ex_all) == 7


def test_traj_mask_is_everything_after_the_system_prompt_once(episodes, smol_tokenizer):
    tok = smol_tokenizer
    examples, _ = _build(episodes, tok, seq_len=512, reserve=128)
    for ex in examples:
        first = ex.m_traj.index(1)
        assert all(ex.m_traj[first:])  # one contiguous run to the end
        assert all(t for t, r, a in zip(ex.m_traj, ex.m_reason, ex.m_act) if r or a)  # R, A within TRAJ
        text = tok.decode(ex.input_ids[first:])
        if ex.window == 0:
            assert text.startswith("<|im_start|>user\n")
            assert "<|im_start|>system" in tok.decode(ex.input_ids[:first])
        elif not ex.truncated:
            # later windows start after the last turn an earlier window supervised
            assert text.startswith("<|im_end|>\n<|im_start|>user\nObservation:")


def test_invalid_turns_are_context_only(episodes, smol_tokenizer):
    ep = copy.deepcopy([e for e in episodes if e.env == "alfworld"][1])
    ep.steps[1].invalid = True
    examples = episode_examples(ep, smol_tokenizer, seq_len=4096)
    assert [t for t, _, _ in examples[0].turn_tokens] == [0, 2, 3, 4]
    assert ep.steps[1].reasoning in smol_tokenizer.decode(examples[0].input_ids)


def test_plain_text_rendering_without_chat(episodes, smol_tokenizer):
    examples, _ = _build(episodes, smol_tokenizer, seq_len=4096, chat=False)
    text = smol_tokenizer.decode(examples[0].input_ids)
    assert "<|im_start|>" not in text and text.startswith("You are an agent in a household")
    ep = [e for e in episodes if e.success][0]
    for turn, t0, t1 in examples[0].turn_tokens:
        s = ep.steps[turn]
        assert smol_tokenizer.decode(examples[0].input_ids[t0:t1]) == format_turn(ep.env, s.reasoning, s.action)


@pytest.mark.parametrize("seq_len", [300, 400, 512])
def test_latest_observation_is_always_in_the_context(episodes, smol_tokenizer, seq_len):
    """The context policy never hides what the agent acts on: every target turn's context holds
    its latest observation (whole, or shortened behind the marker), even at tiny windows."""
    tok = smol_tokenizer
    examples, stats = _build(episodes, tok, seq_len=seq_len, reserve=64)
    assert stats.obs_visible == stats.turns or seq_len == 300  # 300 cannot hold ALFWorld's head + a room
    by_key = {(e.task_id, e.sample): e for e in episodes}
    seen_short = blind = 0
    for ex in examples:
        ep = by_key[(ex.task_id, ex.sample)]
        for turn, t0, _ in ex.turn_tokens:
            if turn == 0 or ex.truncated:
                continue
            context = tok.decode(ex.input_ids[:t0])
            last_obs = ep.steps[turn - 1].observation.strip()
            if last_obs in context:
                continue
            assert "[... observation truncated]" in context
            head = context.rsplit("Observation: ", 1)[1].split("[... observation truncated]")[0].strip()
            assert last_obs.startswith(head)
            seen_short += 1
            blind += not head
    assert stats.obs_truncated == seen_short or stats.truncated
    assert stats.turns - stats.obs_visible == blind  # obs_visible says honestly when nothing fit
    if seq_len == 300:
        assert stats.dropped_turns and stats.obs_truncated  # the policy had to work here
    if seq_len == 512:
        assert stats.elided_turns


def test_eval_context_equals_the_training_context_on_long_episodes(episodes, smol_tokenizer):
    """Replay every turn of the long episodes: the harness's context for the turn (token ids) is
    exactly the training window's prefix before that turn, and holds the latest observation."""
    tok = smol_tokenizer
    long_eps = []
    for env, turns in (("alfworld", 32), ("webshop", 15)):
        ep = copy.deepcopy(max((e for e in episodes if e.env == env and e.success), key=lambda e: len(e.steps)))
        base = list(ep.steps)
        ep.steps = [copy.deepcopy(base[i % len(base)]) for i in range(turns)]  # a long episode of real turns
        for i, st in enumerate(ep.steps):
            st.observation = f"[turn {i}] " + st.observation
        long_eps.append(ep)
    worked = 0
    for seq_len in (1024, 2048):
        for ep in long_eps:
            windows = episode_examples(ep, tok, seq_len=seq_len, reserve=64)
            where = {turn: (ex, t0) for ex in windows for turn, t0, _ in ex.turn_tokens}
            for k in range(len(ep.steps)):
                _, ctx = build_context(ep.env, ep.prompt, ep.steps[:k], tok, chat=True, max_tokens=seq_len,
                                       add_generation_prompt=True, reserve=64)
                ex, t0 = where[k]
                assert ex.input_ids[:t0] == tok(ctx.text, add_special_tokens=False)["input_ids"]
                assert ctx.tokens <= seq_len - 64 and ctx.obs_visible
                if k:
                    assert ep.steps[k - 1].observation.strip()[:40] in ctx.text
                worked += seq_len == 1024 and (ctx.elided > 0 or ctx.dropped > 0)
    assert worked  # the window was small enough for the policy to elide

def test_hotpotqa_finish_is_an_answer_line_in_the_act_span(episodes, smol_tokenizer):
    examples, _ = _build([e for e in episodes if e.env == "hotpotqa" and e.success], smol_tokenizer, seq_len=4096)
    act = smol_tokenizer.decode([i for i, m in zip(examples[0].input_ids, examples[0].m_act) if m])
    assert "Answer: yes\n" in act and "finish[" not in act
    two, _ = _build([e for e in episodes if e.env == "hotpotqa" and e.success], smol_tokenizer, seq_len=4096,
                    rules={"hotpotqa": "hotpotqa-two-phase"})
    act2 = smol_tokenizer.decode([i for i, m in zip(two[0].input_ids, two[0].m_act) if m])
    assert act2 == "Answer: yes\n"  # two-phase: only the final answer is an action


def test_turns_longer_than_the_generation_budget_are_counted_and_warned(episodes, smol_tokenizer):
    tok = smol_tokenizer
    lengths = [len(tok(format_turn(e.env, s.reasoning, s.action), add_special_tokens=False)["input_ids"])
               for e in episodes if e.success for s in e.steps if not s.invalid]
    budget = sorted(lengths)[len(lengths) // 2]  # the median turn: about half do not fit
    with pytest.warns(UserWarning, match=rf"longer than the {budget}-token generation budget"):
        _, stats = build_examples(episodes, tok, seq_len=4096, reserve=budget)
    assert stats.over_budget == sum(n > budget for n in lengths) > 0
    assert f"{stats.over_budget} turns longer than the {budget}-token budget" in stats.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a budget that fits every turn says nothing
        _, stats = build_examples([e for e in episodes if e.success], tok, seq_len=4096, reserve=max(lengths))
    assert stats.over_budget == 0
