"""Self-consistent action selection (`--vote K`): K sampled turns per step, the most frequent
well-formed action is acted on (Kang et al. 2025)."""

from __future__ import annotations

import json

import pytest

from sad_eval.agents.hf import DecodingConfig, HFPolicy, majority_action
from sad_eval.cli import main
from sad_eval.envs import get_spec, make_env
from sad_eval.harness import plan_jobs, rollout
from sad_eval.run import resolve_tasks


def test_majority_action_counts_well_formed_actions_and_breaks_ties_by_order():
    assert majority_action(["a", "b", "b", None]) == (1, {"a": 1, "b": 2})
    assert majority_action([None, "b", "a", "a", "b"]) == (1, {"b": 2, "a": 2})  # tie: sampled first
    assert majority_action([None, None]) == (0, {})  # nothing well-formed: sample 0, as unvoted
    assert majority_action(["x"]) == (0, {"x": 1})


def _play(path, vote: int, reuse: bool = True, env: str = "hotpotqa", n: int = 2):
    policy = HFPolicy(path, decoding=DecodingConfig(max_new_tokens=24), prefix_cache=reuse, vote=vote)
    split = get_spec(env).default_split
    tasks = resolve_tasks(env, split, {"max_steps": 3}, None)[:n]
    eps = []
    rollout(lambda: make_env(env, split=split, max_steps=3), policy, env, split, plan_jobs(tasks), batch=2,
            on_episode=eps.append)
    return sorted(eps, key=lambda e: e.task_id), policy


def _key(eps):
    return [(e.task_id, [(s.raw, s.action, s.observation, s.votes) for s in e.steps]) for e in eps]


@pytest.mark.parametrize("reuse", [True, False])
def test_voting_acts_on_the_majority_and_is_deterministic(tiny_checkpoint, data_root, reuse):
    first, policy = _play(tiny_checkpoint, vote=4, reuse=reuse)
    again, _ = _play(tiny_checkpoint, vote=4, reuse=reuse)
    assert _key(first) == _key(again)  # a seed and a task list: the same trajectories
    steps = [s for e in first for s in e.steps]
    assert steps and all(s.votes is not None for s in steps)
    for s in steps:
        assert sum(s.votes.values()) <= 4
        if s.votes:  # the acted action is a most frequent one; malformed samples are not counted
            assert not s.invalid and s.votes[s.action] == max(s.votes.values())
    if reuse:  # candidates' caches are dropped after each step: at most one per running episode
        assert len(policy.gen.kv.entries) <= 2


def test_vote_one_is_the_greedy_policy_and_leaves_files_as_they_were(tiny_checkpoint, data_root):
    greedy, _ = _play(tiny_checkpoint, vote=1)
    plain = HFPolicy(tiny_checkpoint, decoding=DecodingConfig(max_new_tokens=24))
    assert plain.vote == 1
    assert all(s.votes is None for e in greedy for s in e.steps)
    assert all("votes" not in st for e in greedy for st in e.to_dict()["steps"])


def test_vote_through_the_command_line_records_counts_and_manifest(tiny_checkpoint, data_root, tmp_path):
    out = tmp_path / "v.jsonl"
    rc = main(["eval", "--agent", str(tiny_checkpoint), "--env", "hotpotqa", "-n", "1", "--max-steps", "2",
               "--max-new-tokens", "16", "--vote", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    ep = json.loads(out.read_text().splitlines()[0])
    assert all("votes" in s for s in ep["steps"])
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert '"vote": 3' in json.dumps(manifest)


@pytest.mark.parametrize("argv, message", [
    (["--agent", "oracle", "--vote", "3"], "--vote applies to HF checkpoints"),
    (["--agent", "TINY", "--vote", "3", "--vote-temperature", "0"], "--vote-temperature must be > 0"),
    (["--agent", "TINY", "--vote", "0"], "--vote"),
])
def test_bad_vote_settings_are_one_clear_error(argv, message, tiny_checkpoint, data_root, tmp_path, capsys):
    argv = [str(tiny_checkpoint) if a == "TINY" else a for a in argv]
    rc = main(["eval", "--env", "hotpotqa", "-n", "1", "--out", str(tmp_path / "x.jsonl"), *argv])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "x.jsonl").exists()
