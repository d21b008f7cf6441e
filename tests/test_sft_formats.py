"""`sad-eval export` (chatml / sharegpt) and `sad-eval import` (AgentGym / ETO conversations)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sad_eval.agents.prompts import build_messages, render
from sad_eval.trajectory import Episode, Step, TrajectoryWriter, load_trajectories


def run(*args):
    return subprocess.run([sys.executable, "-m", "sad_eval.cli", *args], capture_output=True, text=True)


@pytest.fixture
def mixed_runs(tmp_path, sample_path, data_root):
    """Real episodes of three envs: the ALFWorld sample, HotPotQA oracle episodes, and a WebShop
    episode whose `meta` has the keys the WebShop env writes (they differ per env)."""
    import sad_eval

    hp = sad_eval.evaluate("oracle", "hotpotqa", n=2, out=tmp_path / "hp.jsonl").path
    ws = tmp_path / "ws.jsonl"
    with TrajectoryWriter(ws) as w:
        w.write(Episode(env="webshop", split="test", task_id="fixed_0", agent="oracle", success=True, score=1.0,
                        prompt="WebShop [SEP] Instruction: [SEP] i need a red shirt [SEP] Search",
                        meta={"asin": "B01", "reward_parts": {"r_att": 1.0}, "selected_options": {"color": "red"}},
                        steps=[Step("Search for it.", "search[red shirt]", "results ..."),
                               Step("This is it.", "click[B01]", "item page"),
                               Step("Buy it.", "click[Buy Now]", "Thank you")]))
    return [sample_path, hp, ws]


def test_raw_trajectories_do_not_load_as_one_dataset_but_the_export_does(mixed_runs, tmp_path, smol_tokenizer):
    import datasets

    with pytest.raises(Exception):  # meta differs per env: today's failure
        datasets.load_dataset("json", data_files=[str(p) for p in mixed_runs], split="train")
    out = tmp_path / "sft.jsonl"
    r = run("export", *map(str, mixed_runs), "--format", "chatml", "--out", str(out), "--all-episodes")
    assert r.returncode == 0, r.stderr
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    eps = load_trajectories(mixed_runs)
    assert len(ds) == len([e for e in eps if e.steps]) and set(ds["env"]) == {"alfworld", "hotpotqa", "webshop"}
    for row, ep in zip(ds, [e for e in eps if e.steps]):
        msgs = row["messages"]
        # through the one prompt builder, ending with the last turn
        assert msgs == build_messages(ep.env, ep.prompt, ep.steps)[:-1]
        assert [m["role"] for m in msgs[:3]] == ["system", "user", "assistant"] and msgs[-1]["role"] == "assistant"
        # turn k is preceded by exactly the prompt the harness renders for the student at turn k
        k = len(ep.steps) - 1
        student_prompt = render(build_messages(ep.env, ep.prompt, ep.steps[:k]), smol_tokenizer).text
        assert smol_tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True) == student_prompt
        assert json.loads(row["meta"]) == ep.meta
    # TRL's conversational SFT format: the chat template renders every row
    for row in ds:
        assert smol_tokenizer.apply_chat_template(row["messages"], tokenize=True)


def test_sharegpt_and_only_success(mixed_runs, tmp_path):
    import datasets

    out = tmp_path / "sg.jsonl"
    r = run("export", *map(str, mixed_runs), "--format", "sharegpt", "--out", str(out))
    assert r.returncode == 0, r.stderr
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert all(ds["success"]) and "skipped 1 failed" in r.stderr  # the sample has one failed episode
    conv = ds[0]["conversations"]
    assert [c["from"] for c in conv[:3]] == ["system", "human", "gpt"] and conv[2]["value"].startswith("Reasoning:")
    r = run("export", str(mixed_runs[0]), "--format", "alpaca", "--out", str(out))
    assert r.returncode == 2 and "unknown export format" in r.stderr


AGENTGYM = [
    {"item_id": "webshop_7", "conversations": [
        {"from": "human", "loss": None, "value": "You are web shopping. Reply with Thought and Action."},
        {"from": "gpt", "loss": False, "value": "OK"},
        {"from": "human", "loss": None, "value": "WebShop [SEP] Instruction: [SEP] i want a blue mug [SEP] Search"},
        {"from": "gpt", "loss": True, "value": "Thought:\nI should search for a blue mug.\n\nAction:\nsearch[blue mug]"},
        {"from": "human", "loss": None, "value": "Instruction: [SEP] i want a blue mug [SEP] Back to Search [SEP] B0X [SEP] Blue Mug"},
        {"from": "gpt", "loss": True, "value": "Thought:\nB0X is a blue mug.\n\nAction:\nclick[B0X]"},
        {"from": "human", "loss": None, "value": "Blue Mug [SEP] Buy Now"},
        {"from": "gpt", "loss": True, "value": "Thought:\nBuy it.\n\nAction:\nclick[Buy Now]"},
        {"from": "human", "loss": None, "value": "Thank you for shopping"}]},
    {"item_id": "webshop_8", "conversations": [  # no reasoning: refused by the segment check
        {"from": "human", "loss": None, "value": "You are web shopping."},
        {"from": "gpt", "loss": False, "value": "OK"},
        {"from": "human", "loss": None, "value": "WebShop [SEP] i want tea [SEP] Search"},
        {"from": "gpt", "loss": True, "value": "Action:\nsearch[tea]"}]},
]

ETO_HOTPOT = [{"id": "hotpotqa_12", "conversations": [
    {"from": "human", "value": "Solve a question answering task with interleaving Thought, Action, Observation steps."},
    {"from": "gpt", "value": "OK"},
    {"from": "human", "value": "Question: Which magazine was started first, Arthur's Magazine or First for Women?"},
    {"from": "gpt", "value": "Thought: I need to search Arthur's Magazine.\nAction: search[Arthur's Magazine]"},
    {"from": "human", "value": "Observation: Arthur's Magazine (1844-1846) was an American literary periodical."},
    {"from": "gpt", "value": "Thought: Arthur's Magazine was started in 1844. It came first.\nAction: finish[Arthur's Magazine]"},
    {"from": "human", "value": "Observation: Episode finished."}]}]


def test_import_agentgym_and_eto_as_teacher_data(tmp_path, smol_tokenizer):
    src = tmp_path / "agentgym.json"
    src.write_text(json.dumps(AGENTGYM))
    out = tmp_path / "teacher.jsonl"
    r = run("import", str(src), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "1/2 conversations kept" in r.stderr and "without REASON/ACT spans" in r.stderr
    (ep,) = load_trajectories([out])
    assert ep.env == "webshop" and ep.task_id == "webshop_7" and ep.prompt.startswith("WebShop [SEP]")
    assert [s.action for s in ep.steps] == ["search[blue mug]", "click[B0X]", "click[Buy Now]"]
    assert ep.steps[0].reasoning == "I should search for a blue mug." and ep.steps[0].observation.startswith("Instruction:")
    assert ep.steps[0].raw.startswith("Thought:\n")  # the raw text as the teacher wrote it
    # ETO-style (JSON lines, no loss flags): HotPotQA's finish becomes the Answer line
    src2 = tmp_path / "eto.jsonl"
    src2.write_text("\n".join(json.dumps(r) for r in ETO_HOTPOT))
    out2 = tmp_path / "hp.jsonl"
    r = run("import", str(src2), "--format", "eto", "--out", str(out2))
    assert r.returncode == 0, r.stderr
    (hp,) = load_trajectories([out2])
    assert hp.prompt.startswith("Question: Which magazine") and hp.steps[-1].action == "finish[Arthur's Magazine]"
    # imported teacher data trains: the distill example builder finds REASON and ACT targets
    from sad_eval.distill.examples import build_examples

    examples, stats = build_examples([ep, hp], smol_tokenizer, seq_len=512)
    assert stats.used == 2 and stats.reason_tokens > 0 and stats.act_tokens > 0
    # nothing usable: one error line, exit 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(AGENTGYM[1:]))
    r = run("import", str(bad), "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode == 2 and "no usable conversations" in r.stderr and "no REASON span" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_export_trains_with_trl_sft_trainer_as_is(mixed_runs, tmp_path, tiny_checkpoint):
    """The exported file goes into TRL's SFTTrainer unchanged (two optimizer steps of a tiny model)."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    out = tmp_path / "sft.jsonl"
    assert run("export", *map(str, mixed_runs), "--out", str(out)).returncode == 0
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    args = trl.SFTConfig(output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=2,
                         max_length=256, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                         dataloader_num_workers=0, disable_tqdm=True)
    trainer = trl.SFTTrainer(model=str(tiny_checkpoint), args=args, train_dataset=ds)
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0
