"""Prefix (KV) reuse across turns gives the trajectories `model.generate` gives, on all three envs."""

from __future__ import annotations

import pytest

from sad_eval.agents.hf import DecodingConfig, HFPolicy
from sad_eval.agents.kv_reuse import KVStore, common_prefix
from sad_eval.envs import make_env
from sad_eval.harness import plan_jobs, rollout
from sad_eval.envs import get_spec

ENV_KW = {"alfworld": {"max_steps": 5}, "webshop": {"max_steps": 4}, "hotpotqa": {"max_steps": 4}}


def _play(path, env: str, reuse: bool, batch: int, n: int = 2, max_new: int = 16, logprobs: bool = False,
          max_context: int | None = None):
    policy = HFPolicy(path, decoding=DecodingConfig(max_new_tokens=max_new), prefix_cache=reuse, logprobs=logprobs,
                      max_context=max_context)
    split = get_spec(env).default_split
    from sad_eval.run import resolve_tasks

    tasks = resolve_tasks(env, split, ENV_KW[env], None)[:n]
    eps, lps = [], []
    orig_act = policy.act

    def act(states):
        turns = orig_act(states)
        lps.extend(t.logprobs for t in turns if t.logprobs)
        return turns

    policy.act = act
    rollout(lambda: make_env(env, split=split, **ENV_KW[env]), policy, env, split, plan_jobs(tasks), batch=batch,
            on_episode=eps.append)
    return sorted(eps, key=lambda e: e.task_id), lps, policy


def _key(eps):
    return [(e.task_id, [(s.reasoning, s.action, s.observation, s.tokens) for s in e.steps]) for e in eps]


@pytest.mark.parametrize("env", ["alfworld", "webshop", "hotpotqa"])
def test_greedy_trajectories_equal_with_and_without_reuse(tiny_checkpoint, data_root, env):
    base, _, _ = _play(tiny_checkpoint, env, reuse=False, batch=2)
    for batch in (1, 2):
        got, _, policy = _play(tiny_checkpoint, env, reuse=True, batch=batch)
        assert _key(got) == _key(base)
        st = policy.gen.reuse_stats
        assert st.reused > 0  # later turns did come from the cache
        assert not policy.gen.kv.entries or len(policy.gen.kv.entries) <= batch


def test_reuse_survives_elision_and_keeps_logprobs(tiny_checkpoint, data_root):
    """A small window forces the context policy to elide and drop; the cache then recomputes from
    the first changed token. Trajectories and chosen-token log-probs equal the no-reuse run."""
    kw = dict(n=2, max_new=16, logprobs=True, max_context=400)
    base, lp0, _ = _play(tiny_checkpoint, "alfworld", reuse=False, batch=2, **kw)
    got, lp1, policy = _play(tiny_checkpoint, "alfworld", reuse=True, batch=2, **kw)
    assert _key(got) == _key(base)
    flat0 = [x for row in lp0 for x in row]
    flat1 = [x for row in lp1 for x in row]
    assert len(flat0) == len(flat1) > 20
    assert max(abs(a - b) for a, b in zip(flat0, flat1)) < 1e-4
    assert any(s.context_tokens for e in got for s in e.steps)
    assert all(s.obs_visible for e in got for s in e.steps)


def test_kv_store_frees_finished_episodes_and_finds_longest_prefix():
    import torch

    from sad_eval.agents.kv_reuse import CachedPrefix

    store = KVStore(capacity=2)
    t = torch.zeros(1, 3, 2)
    store.put("a", CachedPrefix([1, 2, 3], [(t, t)]))
    store.put("b", CachedPrefix([1, 2, 4, 5], [(t, t)]))
    assert store.longest_match([1, 2, 4, 9]) == "b" and common_prefix([1, 2, 3], [1, 2, 4]) == 2
    store.put("c", CachedPrefix([7], [(t, t)]))
    assert list(store.entries) == ["b", "c"]  # capacity: least recently used left
    store.keep_only({"c"})
    assert list(store.entries) == ["c"] and store.nbytes() == 2 * t.nelement() * 4


def test_serve_model_reuses_a_resent_conversation(tiny_checkpoint):
    """An OpenAI-style client resends the whole conversation each turn: the server prefills only
    the new tokens, and answers what plain generation answers."""
    from sad_eval.agents.prompts import build_messages, render
    from sad_eval.agents.serve_model import build
    from sad_eval.trajectory import Step

    _, server = build(str(tiny_checkpoint), max_batch=2)
    try:
        gen = server.gen
        steps = [Step("I look.", "look", "You are in the middle of a room. " * 20)]
        for turn in range(3):
            msgs = build_messages("alfworld", "Your task is to: put a mug in the sink.", steps)
            before = gen.reuse_stats.reused
            d = server.chat({"model": server.model_id, "messages": msgs, "max_tokens": 8, "temperature": 0})
            text = d["choices"][0]["message"]["content"]
            local = gen.generate([render(msgs, gen.tokenizer, chat=True).text], DecodingConfig(max_new_tokens=8),
                                 action_stop=False)[0]
            assert text == local.text
            if turn:
                assert gen.reuse_stats.reused - before > 100  # the earlier conversation came from the cache
            steps.append(Step(f"Turn {turn}.", "inventory", "You carry nothing."))
        assert len(gen.kv.entries) <= 8
    finally:
        server.close()


def test_batched_rows_of_any_length_and_cache_equal_each_alone(tiny_checkpoint):
    """The batch layout (left padding, re-fed prefixes, rows leaving) changes nothing: every row's
    chosen-token log-probs equal those of the same prompt decoded alone without a cache (a
    continuous check: token equality alone can hide a wrong mask on a random model)."""
    import torch
    from transformers import AutoModelForCausalLM

    from sad_eval.agents.kv_reuse import decode_with_reuse

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 1000, (n,), generator=g).tolist() for n in (300, 120, 40, 200)]

    def run(ps, cached, steps=4):
        return decode_with_reuse(model, ps, cached, max_new_tokens=steps, eos_ids=[], logprobs=True,
                                 is_done=lambda i, gen, t: i == 1 and len(gen) == 2)  # row 1 leaves early

    alone = [run([p], [None])[0][0] for p in prompts]
    prefixes = [run([p[: int(len(p) * 0.7)]], [None])[1][0] for p in prompts]
    for cached in ([None] * 4, prefixes, [prefixes[0], None, prefixes[2], None]):
        rows, caches = run(prompts, cached)
        for i, (r, ref) in enumerate(zip(rows, alone)):
            n = len(r.gen)
            assert r.gen == ref.gen[:n]
            assert max(abs(a - b) for a, b in zip(r.logprobs, ref.logprobs)) < 1e-4
            assert caches[i].ids == prompts[i] + r.gen[:-1]
