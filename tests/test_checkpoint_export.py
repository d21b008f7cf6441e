"""Student checkpoints for the ecosystem: plain `AutoModelForCausalLM` + `pipeline`, a model card,
and config files that transformers 4.x reads too (no `TokenizersBackend`, top-level `rope_theta`)."""

from __future__ import annotations

import json

import sad_eval


def test_student_dir_loads_in_plain_transformers_and_has_a_card(tiny_checkpoint, sample_path, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    res = sad_eval.distill(sample_path, str(tiny_checkpoint), tmp_path / "student", max_steps=2, batch_size=2,
                           eval_every=0, seq_len=256, threads=1)
    d = res.path
    tc = json.loads((d / "tokenizer_config.json").read_text())
    assert tc["tokenizer_class"] == "PreTrainedTokenizerFast"  # transformers 4.x has no TokenizersBackend
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["rope_theta"] == cfg["rope_parameters"]["rope_theta"]  # 4.x reads the top-level key
    model = AutoModelForCausalLM.from_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok("Reasoning: I should look.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert model(ids).logits.shape[-1] == model.config.vocab_size
    out = pipeline("text-generation", model=str(d), tokenizer=str(d))("Action:", max_new_tokens=3, do_sample=False)
    assert out[0]["generated_text"].startswith("Action:")
    card = (d / "README.md").read_text()
    assert "library_name: transformers" in card and str(sample_path) in card and "`sad`" in card
    assert "2 steps" in card and "trainer_state.pt" in card  # says where the optimizer state is


def test_make_portable_keeps_a_non_default_rope(tmp_path):
    from sad_eval.models import make_portable

    (tmp_path / "config.json").write_text(json.dumps({"dtype": "bfloat16", "rope_parameters": {
        "rope_theta": 100000.0, "rope_type": "linear", "factor": 2.0}}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TokenizersBackend", "is_local": True}))
    make_portable(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["rope_theta"] == 100000.0 and cfg["rope_scaling"] == {"rope_type": "linear", "factor": 2.0}
    assert cfg["torch_dtype"] == "bfloat16"
    tc = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tc == {"tokenizer_class": "PreTrainedTokenizerFast"}
