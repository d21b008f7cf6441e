"""The training loop on a 2-layer, width-64 student with SmolLM2's tokenizer (CPU, seconds)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from sad_eval.distill.methods import METHODS
from sad_eval.distill.checkpoint import save_checkpoint
from sad_eval.distill.distributed import Dist
from sad_eval.distill.trainer import TrainConfig, train
from sad_eval.errors import SadEvalError

FIXTURE = str(Path(__file__).parent / "data" / "distill_teacher.jsonl")

torch.set_num_threads(1)


def make_tiny(path: Path, tokenizer, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    from sad_eval.distill.students import llama_config

    torch.manual_seed(seed)
    cfg = llama_config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       intermediate_size=128)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smol_tokenizer) -> str:
    return str(make_tiny(tmp_path_factory.mktemp("tiny"), smol_tokenizer))


def cfg(tiny, out, **kw) -> TrainConfig:
    base = dict(data=[FIXTURE], student=tiny, out=str(out), max_steps=2, lr=3e-3, batch_size=2, seq_len=256,
                reserve=0, eval_every=0, progress=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def quiet_train(c: TrainConfig) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(c, log=lambda *a: None)


def rows(out: Path, split: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (Path(out) / "loss_log.jsonl").read_text().splitlines()) if r["split"] == split]


def test_tiny_student_lowers_both_span_losses(tiny, tmp_path):
    out = tmp_path / "run"
    s = quiet_train(cfg(tiny, out, max_steps=24, batch_size=4, seq_len=384, eval_every=24, eval_frac=0.2))
    ev = rows(out, "eval")
    assert ev[0]["step"] == 0 and ev[-1]["step"] == 24
    assert ev[-1]["reason"] < ev[0]["reason"] - 1.0  # held-out REASON loss
    assert ev[-1]["act"] < ev[0]["act"] - 1.0  # held-out ACT loss
    tr = rows(out)
    assert len(tr) == 24 and tr[-1]["reason"] < tr[0]["reason"] and tr[-1]["act"] < tr[0]["act"]
    assert s["tok_per_s"] > 0 and s["steps"] == 24
    for f in ("model.safetensors", "tokenizer.json", "training_args.json", "loss_log.jsonl", "trainer_state.pt"):
        assert (out / f).is_file(), f
    args = json.loads((out / "training_args.json").read_text())
    assert args["seq_len"] == 384 and args["method"] == "sad" and args["step"] == 24


def test_save_then_load_gives_identical_logits(tiny, tmp_path, smol_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the init on disk
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path, model, smol_tokenizer, opt, 7, cfg(tiny, tmp_path), Dist())
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 49152, (2, 17))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert torch.load(tmp_path / "trainer_state.pt", weights_only=False)["step"] == 7


def test_resume_continues_exactly(tiny, tmp_path):
    full = quiet_train(cfg(tiny, tmp_path / "full", max_steps=6))
    quiet_train(cfg(tiny, tmp_path / "part", max_steps=6, stop_at=3))
    assert len(rows(tmp_path / "part")) == 3
    resumed = quiet_train(cfg(tiny, tmp_path / "part", max_steps=6, resume=True))
    assert resumed["start"] == 3 and resumed["steps"] == 6
    a, b = rows(tmp_path / "full"), rows(tmp_path / "part")
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert full["loss"] == pytest.approx(resumed["loss"], rel=1e-5)


def test_every_method_trains(tiny, tmp_path):
    for m in METHODS:
        s = quiet_train(cfg(tiny, tmp_path / m, method=m, max_steps=1))
        assert s["loss"] == s["loss"] and s["loss"] > 0, m  # finite, positive


def test_kl_with_an_online_teacher_and_a_curriculum(tiny, tmp_path):
    s = quiet_train(cfg(tiny, tmp_path / "kl", loss="kl", teacher=tiny, temperature=2.0, curriculum="sorted"))
    # the teacher is the student's own init: the first step's KL is ~0
    assert rows(tmp_path / "kl")[0]["loss"] == pytest.approx(0.0, abs=1e-5)
    assert s["steps"] == 2


def test_kl_teacher_with_another_tokenizer_is_refused(tiny, tmp_path, smol_tokenizer):
    import copy

    other = tmp_path / "other_teacher"
    make_tiny(other, smol_tokenizer)
    tok = copy.deepcopy(smol_tokenizer)
    tok.add_tokens(["<extra_token_for_test>"])
    tok.save_pretrained(other)
    with pytest.raises(SadEvalError, match="tokenizers differ"):
        quiet_train(cfg(tiny, tmp_path / "x", loss="kl", teacher=str(other)))


def test_kl_from_a_topk_sidecar(tiny, tmp_path, smol_tokenizer):
    from transformers import AutoModelForCausalLM

    from sad_eval.distill.examples import build_examples
    from sad_eval.distill.topk import TopK, context_meta, teacher_topk_entries, write_sidecar
    from sad_eval.trajectory import load_trajectories

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        examples, _ = build_examples(load_trajectories([FIXTURE]), smol_tokenizer, seq_len=256, reserve=0)
    teacher = AutoModelForCausalLM.from_pretrained(tiny)
    entries = teacher_topk_entries(examples, teacher, k=16)
    key = next(iter(entries))
    ids, tids, tlp = entries[key]
    entries[key] = (ids + 1, tids, tlp)  # one turn with other tokens: must be dropped, not misaligned
    ctx = context_meta(smol_tokenizer, 256, True, 0, {"alfworld": "", "hotpotqa": "", "webshop": ""})
    side = write_sidecar(tmp_path / "t.topk.safetensors", entries, 16, 49152, **ctx)
    tk = TopK([side])
    assert tk.k == 16 and tk.get(*key)[1].shape == (len(ids), 16)
    s = quiet_train(cfg(tiny, tmp_path / "topk", loss="kl", teacher_topk=[str(side)]))
    assert s["loss"] == s["loss"] and s["loss"] >= 0
    assert s["topk"]["topk_mismatch"] == 1 and s["topk"]["topk_turns"] == len(entries) - 1
    with pytest.raises(SadEvalError, match="online --teacher"):
        quiet_train(cfg(tiny, tmp_path / "topk2", loss="kl", teacher_topk=[str(side)], method="token"))
    with pytest.raises(SadEvalError, match="not found"):
        quiet_train(cfg(tiny, tmp_path / "topk3", loss="kl"))  # no sidecar beside the data
    # a sidecar made under another context is refused with one line naming what differs
    with pytest.raises(SadEvalError, match=r"another context: seq_len 256 \(training: 512\)"):
        quiet_train(cfg(tiny, tmp_path / "topk4", loss="kl", teacher_topk=[str(side)], seq_len=512))
    with pytest.raises(SadEvalError, match=r"chat True \(training: False\)"):
        quiet_train(cfg(tiny, tmp_path / "topk5", loss="kl", teacher_topk=[str(side)], chat=False))
    with pytest.raises(SadEvalError, match="reserve 0"):
        quiet_train(cfg(tiny, tmp_path / "topk6", loss="kl", teacher_topk=[str(side)], reserve=64))
    with pytest.raises(SadEvalError, match="exemplars"):
        quiet_train(cfg(tiny, tmp_path / "topk7", loss="kl", teacher_topk=[str(side)],
                        exemplars={"alfworld": "react"}))
    legacy = write_sidecar(tmp_path / "old.topk.safetensors", entries, 16, 49152, seq_len=256, chat=True)
    with pytest.raises(SadEvalError, match="does not record its context"):
        quiet_train(cfg(tiny, tmp_path / "topk8", loss="kl", teacher_topk=[str(legacy)]))


def test_cli_runs_and_rejects_bad_options(tiny, tmp_path):
    from sad_eval.cli import main

    out = tmp_path / "cli"
    rc = main(["distill", "--data", FIXTURE, "--student", tiny, "--out", str(out), "--max-steps", "1",
               "--batch-size", "1", "--seq-len", "256", "--eval-every", "0", "--threads", "1",
               "--rule", "hotpotqa=hotpotqa-two-phase"])
    assert rc == 0 and (out / "model.safetensors").is_file()
    assert main(["distill", "--data", FIXTURE, "--student", tiny, "--out", str(out), "--method", "nope"]) == 2
    assert main(["distill", "--data", FIXTURE, "--student", "no-such-model", "--out", str(out)]) == 2


def test_distill_topk_cli_records_its_context_and_exemplars(tiny, tmp_path, capsys):
    import shutil

    from safetensors import safe_open

    from sad_eval.cli import main

    data = tmp_path / "t.jsonl"
    shutil.copy(FIXTURE, data)
    assert main(["distill-topk", "--data", str(data), "--teacher", tiny, "--k", "4", "--seq-len", "4096",
                 "--reserve", "0", "--exemplars", "hotpotqa=react"]) == 0
    side = tmp_path / "t.topk.safetensors"
    meta = safe_open(str(side), framework="pt").metadata()
    assert meta["seq_len"] == "4096" and meta["reserve"] == "0" and meta["chat"] == "True"
    shots = json.loads(meta["exemplars"])
    assert shots["alfworld"] == "" and shots["webshop"] == "" and len(shots["hotpotqa"]) == 16
    # trained under the same context (exemplars included): every turn matches
    s = quiet_train(cfg(tiny, tmp_path / "ok", data=[str(data)], loss="kl", seq_len=4096,
                        exemplars={"hotpotqa": "react"}))
    assert s["topk"]["topk_turns"] > 0 and s["topk"]["topk_mismatch"] == 0
    args = json.loads((tmp_path / "ok" / "training_args.json").read_text())
    assert args["exemplars"] == {"hotpotqa": "react"}  # the eval agent reads them back (test_exemplars)
    capsys.readouterr()
    assert main(["distill", "--data", str(data), "--student", tiny, "--out", str(tmp_path / "bad"), "--loss", "kl",
                 "--seq-len", "4096", "--reserve", "0", "--max-steps", "1", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "another context: exemplars" in err and len(err.strip().splitlines()) == 1
