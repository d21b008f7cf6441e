"""LoRA students through peft (``--lora-r R``): train low-rank adapters, keep every other weight frozen.

What LoRA buys on this machine is memory and step time: the frozen weights need no gradient and no
AdamW state, and no weight gradient is computed for them (docs/distill.md, "LoRA", has the
measurement). The embeddings and the tied LM head are never adapted, so they stay frozen and tied.

Checkpoints. The harness evaluates a plain HF checkpoint: every save writes the adapters merged
into a copy of the model (the training model keeps its unmerged weights, so a run that saves
trains exactly like one that does not). Resuming needs the unmerged pieces, which a merged model
cannot give back exactly in floating point; so the trainer state holds the adapter weights, and
the frozen base is rebuilt from ``--student`` as at the start, checked against a SHA-256 of its
weights recorded at the start.
"""

from __future__ import annotations

import copy
import hashlib
import warnings

from sad_eval.distill.config import LORA_TARGETS, TrainConfig, split_names
from sad_eval.errors import SadEvalError


def base_digest(model) -> str:
    """SHA-256 over the names and bytes of every parameter (tied ones once)."""
    import torch

    h, seen = hashlib.sha256(), set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def settings(cfg: TrainConfig) -> dict:
    """The adapter's shape, as the trainer state records it (a resume must match it)."""
    return {"r": cfg.lora_r, "alpha": float(cfg.lora_alpha if cfg.lora_alpha is not None else 2 * cfg.lora_r),
            "dropout": float(cfg.lora_dropout), "targets": split_names(cfg.lora_targets or LORA_TARGETS)}


class Lora:
    """A student with LoRA adapters injected: ``model`` is the (adapted) causal LM the loop runs."""

    def __init__(self, model, cfg: TrainConfig):
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise SadEvalError("--lora-r needs peft (pip install peft, or reinstall sad-eval)") from None

        self.settings = settings(cfg)
        self.digest = base_digest(model)  # the frozen weights these adapters belong to
        conf = LoraConfig(r=cfg.lora_r, lora_alpha=self.settings["alpha"], lora_dropout=self.settings["dropout"],
                          target_modules=self.settings["targets"], bias="none", task_type="CAUSAL_LM")
        try:
            with warnings.catch_warnings():  # transformers' deprecation notes on what peft calls
                warnings.simplefilter("ignore", FutureWarning)
                self.peft = get_peft_model(model, conf)
        except ValueError as e:  # peft: "Target modules {...} not found in the base model"
            first = str(e).strip().splitlines()[0][:200]
            raise SadEvalError(f"--lora-targets {','.join(self.settings['targets'])}: {first}") from None
        self.model = self.peft.get_base_model()  # the same modules, adapters inside

    def trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def state(self) -> dict:
        """What the trainer state keeps: the adapter weights (tensors), its shape, the base's digest."""
        from peft import get_peft_model_state_dict

        weights = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.peft).items()}
        return {**self.settings, "base_sha256": self.digest, "weights": weights}

    def load(self, state: dict, where: str) -> None:
        """Restore the adapters of a trainer state, refusing one of another shape or base."""
        from peft import set_peft_model_state_dict

        mine = {k: state.get(k) for k in self.settings}
        if mine != self.settings:
            diff = ", ".join(f"{k} {state.get(k)!r} (now {v!r})" for k, v in self.settings.items() if state.get(k) != v)
            raise SadEvalError(f"{where} was trained with other LoRA settings: {diff}; resume with the same "
                               "--lora-* options or start a new --out")
        if state.get("base_sha256") != self.digest:
            raise SadEvalError(f"{where}: the LoRA adapters were trained on other base weights than the student "
                               "built now (--student or --init-from-layers changed, or the checkpoint on disk did)")
        res = set_peft_model_state_dict(self.peft, state["weights"])
        missing = [k for k in getattr(res, "missing_keys", []) if "lora_" in k]
        if missing or getattr(res, "unexpected_keys", []):
            raise SadEvalError(f"{where}: the saved adapters do not fit the model "
                               f"({len(missing)} missing, {len(res.unexpected_keys)} unexpected)")

    def merged(self):
        """A plain HF model: the adapters merged into a copy (the training model is left as it is)."""
        return copy.deepcopy(self.peft).merge_and_unload()
