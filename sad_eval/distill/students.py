"""Student models: any HF causal LM, the embedded SmolLM2-135M, or a SmolLM2-shaped size family.

The family members are Llama configs (SmolLM2's architecture: RMSNorm, SwiGLU MLP, grouped-query
attention, RoPE, tied embeddings) that share SmolLM2's tokenizer, so every student can be distilled
from a SmolLM2-tokenized teacher and evaluated by the same harness. Parameter counts (tied
embeddings counted once) are in docs/distill.md; `param_count` recomputes them.

``--init-from-layers K`` builds a student from the first K decoder layers of a source model (its
embeddings, final norm and head included), the usual "layer-dropping" initialisation of a compressed
student (e.g. DistilBERT takes every other teacher layer; taking the bottom K keeps the embedding
pipeline intact). With a named size the source must have the same width; ``base`` has SmolLM2's
width, so ``--student base --init-from-layers 8`` starts from SmolLM2-135M's bottom 8 layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sad_eval.errors import SadEvalError
from sad_eval.models import SMOLLM2, resolve_model

# name -> LlamaConfig fields. Vocabulary and special ids come from SmolLM2's tokenizer.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, num_key_value_heads=1,
                 intermediate_size=512),
    "small": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, num_key_value_heads=2,
                  intermediate_size=1024),
    # SmolLM2-135M's layer shape (width 576, 9 heads of 64, 3 kv heads, MLP 1536), 8 layers of its 30
    "base": dict(hidden_size=576, num_hidden_layers=8, num_attention_heads=9, num_key_value_heads=3,
                 intermediate_size=1536),
}

# SmolLM2's non-size settings (config.json of SmolLM2-135M-Instruct)
SMOL_COMMON: dict[str, Any] = dict(vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                                   rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=1,
                                   eos_token_id=2, pad_token_id=2, hidden_act="silu", head_dim=64)


def llama_config(hidden_size: int, num_hidden_layers: int, num_attention_heads: int,
                 num_key_value_heads: int, intermediate_size: int, **overrides):
    """A SmolLM2-style LlamaConfig of the given shape (also used by tests for 2-layer toys)."""
    from transformers import LlamaConfig

    common = dict(SMOL_COMMON)
    common["head_dim"] = hidden_size // num_attention_heads
    rope_theta = common.pop("rope_theta")
    common.update(overrides)
    cfg = LlamaConfig(hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                      num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
                      intermediate_size=intermediate_size, **common)
    # transformers 5 keeps rope settings in `rope_parameters`; older versions read `rope_theta`
    if hasattr(cfg, "rope_parameters") and isinstance(getattr(cfg, "rope_parameters"), dict):
        cfg.rope_parameters["rope_theta"] = rope_theta
    else:
        cfg.rope_theta = rope_theta
    return cfg


def param_count(model) -> int:
    """Distinct parameters (a tied head is counted once)."""
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


def _load(path: Path, dtype):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as e:  # transformers raises many kinds for a bad checkpoint
        raise SadEvalError(f"cannot load a causal LM from {path}: {e}") from e


def truncate_layers(model, k: int):
    """Keep the first ``k`` decoder layers of a Llama-like model, in place."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise SadEvalError(f"--init-from-layers needs a model with `model.layers` (got {type(model).__name__})")
    if not 1 <= k <= len(layers):
        raise SadEvalError(f"--init-from-layers {k}: the source has {len(layers)} layers")
    model.model.layers = layers[:k]
    model.config.num_hidden_layers = k
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:k]
    return model


def build_student(name: str, init_from_layers: int | None = None, init_source: str = SMOLLM2,
                  seed: int = 0, dtype=None):
    """The student to train, in float32 (unless ``dtype``), and the checkpoint its tokenizer comes from.

    - a path or ``smollm2-135m``: that checkpoint (with ``init_from_layers``: its first K layers);
    - ``tiny``/``small``/``base``: a fresh SmolLM2-shaped model, random init (seeded), or with
      ``init_from_layers`` the first K layers and embeddings of ``init_source``.
    """
    import torch

    dtype = dtype or torch.float32
    if name in SIZES:
        from transformers import AutoModelForCausalLM

        shape = dict(SIZES[name])
        if init_from_layers:
            src = _load(resolve_model(init_source), dtype)
            if src.config.hidden_size != shape["hidden_size"]:
                wide = [n for n, s in SIZES.items() if s["hidden_size"] == src.config.hidden_size]
                raise SadEvalError(
                    f"--student {name} has width {shape['hidden_size']} but {init_source} has "
                    f"{src.config.hidden_size}; use --student {wide[0] if wide else init_source} with --init-from-layers")
            model = truncate_layers(src, init_from_layers)
        else:
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(llama_config(**shape), dtype=dtype)
        return model, resolve_model(SMOLLM2)
    path = resolve_model(name)
    model = _load(path, dtype)
    if init_from_layers:
        model = truncate_layers(model, init_from_layers)
    return model, path


def load_teacher(name: str, dtype=None):
    """A frozen teacher in eval mode."""
    import torch

    model = _load(resolve_model(name), dtype or torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model


def check_same_vocab(student_tok, teacher_tok, teacher_model=None, student_model=None) -> None:
    """Logit distillation compares distributions token by token: the vocabularies must be identical."""
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        a, b = len(student_tok), len(teacher_tok)
        raise SadEvalError(
            f"teacher and student tokenizers differ (vocab {b} vs {a}); KL distillation needs the same "
            "tokenizer: use --loss ce, or a teacher trained with the student's tokenizer")
    if teacher_model is not None and student_model is not None:
        vt = teacher_model.get_output_embeddings().weight.shape[0]
        vs = student_model.get_output_embeddings().weight.shape[0]
        if vt != vs:
            raise SadEvalError(f"teacher and student output layers differ in size ({vt} vs {vs} logits)")
