"""The wiki store's build and cache rules, on a tiny synthetic data file (no installed data needed)."""

from __future__ import annotations

import json

import pytest


def _rec(qid, title_versions, split="train", sentence_split="original", sf=None, answer="x"):
    return {"id": qid, "question": f"Question {qid}?", "answer": answer, "type": "bridge", "level": "easy",
            "supporting_facts": sf or [[title_versions[0][0], 0]], "context": title_versions, "split": split,
            "setting": "distractor", "source": "test", "sentence_split": sentence_split}


def _write(root, records):
    path = root / "hotpotqa" / "hotpotqa_with_context.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("SAD_EVAL_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    records = [
        _rec("q1", [["Alpha", ["Alpha is a thing.", " It is big."]], ["Beta (band)", ["Beta is a band.", " Beta rocks."]]]),
        # Alpha again: a longer version, but from an approximately re-split record
        _rec("q2", [["Alpha", ["Alpha is a thing. It is big and old, very old."]], ["Gamma", ["Gamma rays."]]],
             sentence_split="approx"),
        # Gamma again: two original versions, the longer one wins
        _rec("q3", [["Gamma", ["Gamma rays are light.", " Very short waves."]], ["Delta", ["Delta is a river mouth."]]],
             split="dev"),
    ]
    _write(root, records)
    return root, records


def test_version_choice_is_deterministic(tiny):
    from sad_eval.envs import wiki_store

    root, _ = tiny
    store = wiki_store.load_store(root)
    assert store.titles == sorted(["Alpha", "Beta (band)", "Gamma", "Delta"])
    assert store.sentences_of("Alpha") == ["Alpha is a thing.", "It is big."]  # original split wins
    assert store.sentences_of("Gamma") == ["Gamma rays are light.", "Very short waves."]  # longest wins
    assert store.meta["conflicting_titles"] == 2
    assert store.questions["q1"]["support"] == [["Alpha", 0, "Alpha is a thing."]]
    assert store.questions["q1"]["has_gold"] is True


def test_search_on_tiny_store(tiny):
    from sad_eval.envs import wiki_store

    store = wiki_store.load_store(tiny[0])
    assert store.page("beta (BAND)")[0] == "Beta (band)"
    assert store.similar("Beta", 2)[0] == "Beta (band)"  # same base title first
    assert store.similar("river", 5) == ["Delta"]


def test_index_is_cached_and_rebuilt_on_checksum_change(tiny):
    from sad_eval.envs import wiki_store

    root, records = tiny
    first = wiki_store.ensure_index(root)
    meta = (first / "meta.json").read_text()
    assert wiki_store.ensure_index(root) == first and (first / "meta.json").read_text() == meta  # no rebuild
    records[0]["context"][0][1] = ["Alpha is now something else entirely."]
    _write(root, records)
    second = wiki_store.ensure_index(root)
    assert second != first and not first.exists()
    assert wiki_store.load_store(root).sentences_of("Alpha") == ["Alpha is now something else entirely."]


def test_tiny_env_splits_and_episode(tiny):
    from sad_eval.envs.hotpotqa import HotPotQAEnv

    root, _ = tiny
    env = HotPotQAEnv(split="train", data_root=root)
    assert env.task_ids == ["q1", "q2"]
    obs, info = env.reset(options={"task_id": "q1"})
    assert obs == "Question: Question q1?"
    assert env.step("search[alpha]")[0] == "Alpha is a thing. It is big."
    obs, reward, term, trunc, info = env.step("finish[X]")
    assert reward == 1.0 and term and info["success"]
