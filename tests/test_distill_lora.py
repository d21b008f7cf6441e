"""LoRA students (``--lora-r``, sad_eval/distill/lora.py) on a 2-layer, width-64 student with SmolLM2's
tokenizer (CPU, seconds): only the adapters train, the checkpoint is a plain merged model, resume is exact."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from sad_eval.distill.config import LORA_TARGETS, TrainConfig, validate_train_config
from sad_eval.distill.trainer import train
from sad_eval.errors import SadEvalError

FIXTURE = str(Path(__file__).parent / "data" / "distill_teacher.jsonl")

torch.set_num_threads(1)


@pytest.fixture
def student(tiny_student) -> str:
    return tiny_student


def cfg(student, out, **kw) -> TrainConfig:
    base = dict(data=[FIXTURE], student=student, out=str(out), max_steps=4, lr=1e-2, batch_size=2, seq_len=256,
                reserve=0, eval_every=0, progress=False, threads=1, lora_r=8)
    base.update(kw)
    return TrainConfig(**base)


def quiet_train(c: TrainConfig) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(c, log=lambda *a: None)


def rows(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (Path(out) / "loss_log.jsonl").read_text().splitlines()) if r["split"] == "train"]


def adapted(student: str, state: dict, c: TrainConfig):
    """The student with a trainer state's adapters: the unmerged model the run trained."""
    from sad_eval.distill.lora import Lora
    from sad_eval.distill.students import build_student

    model, _ = build_student(student)
    lora = Lora(model, c)
    lora.load(state["lora"], "test")
    return lora


def test_only_the_adapters_train_and_the_embeddings_stay_frozen_and_tied(student):
    from sad_eval.distill.lora import Lora
    from sad_eval.distill.students import build_student

    model, _ = build_student(student)
    lora = Lora(model, cfg(student, "unused"))
    m = lora.model
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # A and B on each of the 7 projections of both layers
    assert len(trainable) == 2 * 2 * len(LORA_TARGETS)
    assert lora.trainable() == sum(p.numel() for n, p in m.named_parameters() if p.requires_grad)
    assert m.get_output_embeddings().weight is m.get_input_embeddings().weight  # tied
    assert not m.get_input_embeddings().weight.requires_grad
    # a backward pass leaves no gradient on a frozen weight
    ids = torch.randint(0, 49152, (1, 9))
    m(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is None for n, p in m.named_parameters() if "lora_" not in n)
    assert all(p.grad is not None for n, p in m.named_parameters() if ".lora_B." in n)


def test_a_lora_run_trains_and_saves_a_plain_merged_checkpoint(student, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from sad_eval.distill.checkpoint import load_state

    out = tmp_path / "run"
    c = cfg(student, out, max_steps=16, batch_size=4)
    s = quiet_train(c)
    tr = rows(out)
    assert tr[-1]["loss"] < tr[0]["loss"] - 0.5
    # the checkpoint is what `sad-eval eval --agent out` loads: no peft files, no adapter keys
    saved = load_file(out / "model.safetensors")
    assert not any("lora" in k or "base_layer" in k for k in saved)
    assert not (out / "adapter_config.json").exists()
    base = load_file(Path(student) / "model.safetensors")
    assert set(saved) == set(base)
    args = json.loads((out / "training_args.json").read_text())
    assert (args["lora_r"], args["lora_alpha"], args["lora_dropout"], args["lora_targets"]) == \
        (8, None, 0.0, list(LORA_TARGETS))
    assert s["trainable_params"] < s["params"] / 10 and s["params"] == sum(v.numel() for v in saved.values())
    # only what LoRA adapts changed: embeddings and norms are the student's, bit for bit
    for k in saved:
        if not any(f".{t}." in k for t in LORA_TARGETS):
            assert torch.equal(saved[k], base[k]), k
    changed = [k for k in saved if not torch.equal(saved[k], base[k])]
    assert changed and all(any(f".{t}." in k for t in LORA_TARGETS) for k in changed)
    # the merged checkpoint computes what the adapted model computes
    lora = adapted(student, load_state(out / "trainer_state.pt"), c)
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert plain.get_output_embeddings().weight is plain.get_input_embeddings().weight
    ids = torch.randint(0, 49152, (2, 23))
    lora.model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, lora.model(ids).logits, atol=1e-5)
        lora.model(ids)  # merging a copy left the training model's adapters in place
        assert any(".lora_A." in n for n, _ in lora.model.named_parameters())


def test_lora_resume_continues_exactly(student, tmp_path):
    from safetensors.torch import load_file

    from sad_eval.distill.checkpoint import load_state

    full = quiet_train(cfg(student, tmp_path / "full", max_steps=6))
    quiet_train(cfg(student, tmp_path / "part", max_steps=6, stop_at=3))
    assert len(rows(tmp_path / "part")) == 3
    resumed = quiet_train(cfg(student, tmp_path / "part", max_steps=6, resume=True))
    assert resumed["start"] == 3 and resumed["steps"] == 6
    a, b = rows(tmp_path / "full"), rows(tmp_path / "part")
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # the same arithmetic, step for step
    wa, wb = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = load_state(tmp_path / "full" / "trainer_state.pt"), load_state(tmp_path / "part" / "trainer_state.pt")
    assert all(torch.equal(sa["lora"]["weights"][k], sb["lora"]["weights"][k]) for k in sa["lora"]["weights"])
    exp = [v["exp_avg_sq"] for v in sa["optimizer"]["state"].values()]
    assert all(torch.equal(x, v["exp_avg_sq"]) for x, v in zip(exp, sb["optimizer"]["state"].values()))
    # the optimizer holds the adapters only
    assert sum(v["exp_avg"].numel() for v in sa["optimizer"]["state"].values()) == full["trainable_params"]
    assert full["loss"] == resumed["loss"]


def test_a_resume_with_other_lora_settings_or_base_is_refused(student, tmp_path, smol_tokenizer):
    out = tmp_path / "run"
    quiet_train(cfg(student, out, max_steps=2, stop_at=1))
    with pytest.raises(SadEvalError, match="trained with LoRA: resume with the same --lora-r"):
        quiet_train(cfg(student, out, max_steps=2, resume=True, lora_r=0))
    with pytest.raises(SadEvalError, match=r"other LoRA settings: r 8 \(now 4\)"):
        quiet_train(cfg(student, out, max_steps=2, resume=True, lora_r=4))
    # another base under the same path
    from transformers import AutoModelForCausalLM

    other = tmp_path / "other"
    model = AutoModelForCausalLM.from_pretrained(student)
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)
    model.save_pretrained(other)
    smol_tokenizer.save_pretrained(other)
    with pytest.raises(SadEvalError, match="other base weights"):
        quiet_train(cfg(str(other), out, max_steps=2, resume=True))
    full = tmp_path / "full"
    quiet_train(cfg(student, full, max_steps=2, stop_at=1, lora_r=0))
    with pytest.raises(SadEvalError, match="trained without LoRA"):
        quiet_train(cfg(student, full, max_steps=2, resume=True))


def test_unknown_targets_are_one_clear_error(student, tmp_path):
    with pytest.raises(SadEvalError, match="--lora-targets nope_proj: Target modules"):
        quiet_train(cfg(student, tmp_path / "o", lora_targets=["nope_proj"]))


def test_lora_flags_round_trip_through_the_command_line():
    from sad_eval.cli import parse_settings
    from sad_eval.options import to_argv

    t = parse_settings(["distill", "--data", "a.jsonl", "--student", "smollm2-135m", "--out", "o", "--lora-r", "16",
                        "--lora-alpha", "8", "--lora-dropout", "0.05", "--lora-targets", "q_proj, v_proj"])
    assert t == TrainConfig(data=["a.jsonl"], student="smollm2-135m", out="o", lora_r=16, lora_alpha=8.0,
                            lora_dropout=0.05, lora_targets=["q_proj", "v_proj"])
    assert parse_settings(["distill", *to_argv(t, "distill")]) == t
    plain = parse_settings(["distill", "--data", "a.jsonl", "--student", "s", "--out", "o"])
    assert (plain.lora_r, plain.lora_alpha, plain.lora_targets) == (0, None, list(LORA_TARGETS))
    assert to_argv(plain, "distill") == ["--data", "a.jsonl", "--student", "s", "--out", "o"]


@pytest.mark.parametrize("kw, message", [
    (dict(student="tiny"), "random init"),
    (dict(lora_r=0, lora_alpha=32.0), "--lora-alpha only apply with LoRA"),
    (dict(lora_r=0, lora_targets=["q_proj"]), "--lora-targets only apply with LoRA"),
    (dict(lora_alpha=0.0), "--lora-alpha must be positive"),
    (dict(lora_dropout=1.0), r"--lora-dropout must be in \[0, 1\)"),
    (dict(lora_targets=[]), "--lora-targets is empty"),
    (dict(lora_r=-1), "--lora-r must be at least 0"),
])
def test_bad_lora_settings_are_one_clear_error(kw, message):
    base = dict(data=["a.jsonl"], student="smollm2-135m", out="o", lora_r=8)
    with pytest.raises(SadEvalError, match=message):
        validate_train_config(TrainConfig(**{**base, **kw}))
    # a named size initialised from a pretrained model's layers is fine
    validate_train_config(TrainConfig(**{**base, "student": "base", "init_from_layers": 8}))


def test_the_command_refuses_lora_on_a_random_init_size(capsys):
    from sad_eval.cli import main

    assert main(["distill", "--data", FIXTURE, "--student", "tiny", "--out", "/nonexistent/o", "--lora-r", "8"]) == 2
    assert "random init" in capsys.readouterr().err


def test_a_lora_checkpoint_killed_mid_save_resumes_to_the_uninterrupted_weights(student, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from sad_eval.distill import checkpoint

    class Killed(BaseException):
        pass

    quiet_train(cfg(student, tmp_path / "full", max_steps=6, save_every=2))
    real_save = torch.save

    def save(obj, f, *a, **k):  # the kill: while the step-4 trainer state (with the adapters) is written
        if isinstance(obj, dict) and obj.get("step") == 4 and "lora" in obj:
            raise Killed
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    with pytest.raises(Killed):
        quiet_train(cfg(student, tmp_path / "part", max_steps=6, save_every=2))
    monkeypatch.undo()
    resumed = quiet_train(cfg(student, tmp_path / "part", max_steps=6, save_every=2, resume=True))
    assert resumed["start"] == 2
    wa, wb = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["step"] for r in rows(tmp_path / "part")] == [1, 2, 3, 4, 5, 6]
