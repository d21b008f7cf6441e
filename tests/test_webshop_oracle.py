"""The WebShop oracle reasons only from what the pages show: run it on many episodes with an env
that holds no goal facts, and check that every product it clicks was listed on the page it
clicked from, every option it picks is one the instruction names, and every ASIN, price and
quoted title in its reasoning appears in the instruction or an observation it had seen."""

from __future__ import annotations

import re

import pytest

_ASIN = re.compile(r"\bB[0-9A-Z]{9}\b")
_MONEY = re.compile(r"\$([\d,]+(?:\.\d+)?)")
_TITLE = re.compile(r"\"(.+?)…?\" at \$")  # the oracle quotes titles as "TITLE" at $PRICE


def _amounts(text: str) -> set[str]:
    return {f"{float(x.replace(',', '')):.2f}" for x in _MONEY.findall(text)} | {
        f"{float(x):.2f}" for x in re.findall(r"\b\d+(?:\.\d+)?\b", text)}


@pytest.fixture(scope="module")
def episodes(data_root):
    from sad_eval.agents.experts import make_expert
    from sad_eval.agents.experts import expert_env_kwargs
    from sad_eval.envs.webshop.env import WebShopEnv
    from sad_eval.harness import run_episode

    assert expert_env_kwargs("webshop") == {}  # it asks the env for no privileged facts
    env = WebShopEnv(split="train", data_root=data_root)
    oracle = make_expert("webshop")
    try:
        tasks = env.task_ids[::160]  # 41 train goals spread over the split
        return [run_episode(env, oracle, "webshop", t, split="train") for t in tasks]
    finally:
        env.close()


def test_oracle_needs_no_goal_facts(episodes):
    assert len(episodes) >= 40 and all(e.status == "ok" for e in episodes)
    assert sum(e.success for e in episodes) >= len(episodes) // 2  # it still shops well from the page


def test_every_click_and_claim_is_traceable_to_the_pages(episodes):
    from sad_eval.agents.experts.webshop import parse_instruction

    checked = 0
    for e in episodes:
        instruction = re.sub(r"^WebShop\nInstruction:\n", "", e.prompt).removesuffix("\n[Search]")
        req = parse_instruction(instruction)
        seen, before = [e.prompt], e.prompt
        for s in e.steps:
            context = "\n".join(seen)
            m = re.fullmatch(r"click\[(.+)\]", s.action)
            if m and _ASIN.fullmatch(m.group(1)):
                assert f"[{m.group(1)}]" in before, (e.task_id, s.action)  # listed on the page it clicked
            elif m and m.group(1) not in ("Buy Now", "< Prev", "Next >", "Back to Search"):
                assert m.group(1) in req.options.values(), (e.task_id, s.action)  # a requested option
                assert f"[{m.group(1)}]" in before
            for a in _ASIN.findall(s.reasoning):
                assert a in context, (e.task_id, a, s.reasoning)
            shown = _amounts(context)
            for v in _MONEY.findall(s.reasoning):  # a price or the budget, as the pages wrote it
                assert f"{float(v.replace(',', '')):.2f}" in shown, (e.task_id, v, s.reasoning)
            for t in _TITLE.findall(s.reasoning):
                assert t in context, (e.task_id, t)
            for name, value in req.options.items():  # option claims quote the instruction's own words
                if f"{name}: {value}" in s.reasoning:
                    assert f"{name}: {value}" in instruction
            checked += 1
            seen.append(s.observation)
            before = s.observation
    assert checked > 200
