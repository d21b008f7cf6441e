"""`TrainConfig`: every setting of a distillation run, and the one source of `sad-eval distill`'s
options (sad_eval/options.py), of the Python API's keywords and of an experiment's distill stage.

No torch here: building the command line (`sad-eval --help`) must stay instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sad_eval.errors import SadEvalError
from sad_eval.options import check_bounds, flag, paths_to_strings

EXEMPLARS_HELP = ("Few-shot exemplars of the prompts, as the harness's --exemplars: SPEC for every env or "
                  "ENV=SPEC (repeatable); the checkpoint records them and is evaluated with them.")


def _env_pairs(value: dict[str, str]) -> list[str]:
    """{env or "*": x} -> ["ENV=x", ...] (a bare "x" for every env): the repeatable ENV=X options."""
    return [x if env == "*" else f"{env}={x}" for env, x in value.items()]


def _rules(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items or []:
        env, sep, rule = it.partition("=")
        if not sep or not env or not rule:
            raise SadEvalError(f"--rule {it!r}: expected ENV=RULE, e.g. hotpotqa=hotpotqa-two-phase")
        out[env] = rule
    return out


def _exemplars(items: list[str]) -> dict[str, str]:
    from sad_eval.agents.exemplars import parse_env_specs

    return parse_env_specs(items)


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def split_names(value) -> list[str]:
    """"a,b" (or a list) -> ["a", "b"]."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [x.strip() for x in items if x.strip()]


def _optional_paths(value):
    return [str(v) for v in value] if value else None


@dataclass
class TrainConfig:
    data: list[str] = flag(name="--data", help="Teacher trajectory JSONL (repeatable).", required=True,
                           cli_type=list[Path], from_cli=paths_to_strings)
    student: str = flag(name="--student", required=True,
                        help="Student: a checkpoint dir, smollm2-135m, or a size: tiny | small | base.")
    out: str = flag(name="--out", help="Output checkpoint dir (e.g. ckpt/NAME).", required=True,
                    cli_type=Path, from_cli=str)
    method: str = flag("sad", "--method", "sad | token | no-seg | reason-only | action-only | random-span | "
                                          "lm (plain causal LM).")
    loss: str = flag("ce", "--loss", "ce (hard targets) | kl (teacher distributions).")  # ce | kl
    teacher: str | None = flag(None, "--teacher", "Online teacher checkpoint for --loss kl (same tokenizer).")
    # top-k sidecars (kl without --teacher); default: beside --data
    teacher_topk: list[str] | None = flag(None, "--teacher-topk", "Top-k sidecar(s) for --loss kl (default: "
                                          "DATA.topk.safetensors).", cli_type=list[Path],
                                          from_cli=_optional_paths)
    init_from_layers: int | None = flag(None, "--init-from-layers", "Initialise from the first K layers "
                                        "(+embeddings) of --init-source (named sizes) or of --student.")
    init_source: str = flag("smollm2-135m", "--init-source",
                            "Model whose layers --init-from-layers copies into a named size.")
    # LoRA (peft): off by default; docs/distill.md ("LoRA") says what it is for and what it measured
    lora_r: int = flag(0, "--lora-r", "LoRA rank: train low-rank adapters of the frozen student (peft) instead "
                       "of every weight; 0: full fine-tuning. The checkpoint is saved merged (a plain model).",
                       at_least=0)
    # None: 2·r (scale alpha/r = 2), the common choice; the learning rate matters more
    lora_alpha: float | None = flag(None, "--lora-alpha", "LoRA alpha; the update is scaled by alpha/r "
                                    "(default 2·r).")
    lora_dropout: float = flag(0.0, "--lora-dropout", "Dropout on the LoRA input (default 0: deterministic).")
    # every linear projection of a Llama block: LoRA on the MLP too tracks full fine-tuning far better
    # than attention-only (QLoRA, Dettmers et al. 2023); embeddings and the tied head stay frozen
    lora_targets: list[str] = flag(name="--lora-targets", default_factory=lambda: list(LORA_TARGETS),
                                   cli_type=str, to_cli=",".join, from_cli=split_names,
                                   help="Comma-separated module names LoRA adapts.")
    max_steps: int = flag(200, "--max-steps", "Optimizer steps.", at_least=1)
    lr: float = flag(3e-4, "--lr", "Peak learning rate (AdamW).")
    min_lr_ratio: float = flag(0.1, "--min-lr-ratio", "The cosine schedule ends at this share of --lr.")
    warmup_steps: int | None = flag(None, "--warmup-steps", "Linear warmup steps (default 5% of --max-steps).")
    weight_decay: float = flag(0.01, "--weight-decay")
    grad_clip: float = flag(1.0, "--grad-clip", "Gradient norm clip.")
    batch_size: int = flag(4, "--batch-size", "Sequences per micro-batch per process.", at_least=1)
    grad_accum: int = flag(1, "--grad-accum", "Micro-batches per optimizer step.", at_least=1)
    # holds a WebShop page + the prompt; measured in docs/distill.md ("Context policy")
    seq_len: int = flag(2048, "--seq-len", "Max tokens per training sequence (the harness's context budget).",
                        at_least=1)
    # the harness's max_new_tokens (see examples.py)
    reserve: int = flag(128, "--reserve", "The harness's max_new_tokens: contexts are built leaving this room.")
    lambda_reason: float = flag(1.0, "--lambda-reason", "λr: weight of the REASON mean.")
    lambda_act: float = flag(1.0, "--lambda-act", "λa: weight of the ACT mean.")
    temperature: float = flag(1.0, "--temperature", "KD temperature T (loss scaled by T²).")
    curriculum: str = flag("none", "--curriculum", "none | sorted | competence.")
    alpha: float = flag(1.0, "--alpha", "Complexity weight of |REASON| tokens.")
    beta: float = flag(1.0, "--beta", "Complexity weight of |ACT| tokens.")
    gamma: float = flag(1.0, "--gamma", "Complexity weight of mean teacher entropy (nats).")
    c0: float = flag(0.1, "--c0", "Competence curriculum: the share of the data open at step 0.")
    # default: max_steps // 2
    competence_steps: int | None = flag(None, "--competence-steps", "Steps to full competence (default max-steps/2).")
    seed: int = flag(0, "--seed")
    resume: bool = flag(False, "--resume", "Continue from the checkpoint in --out.")
    # checkpoint and exit after this step (time-limited jobs); resume later
    stop_at: int | None = flag(None, "--stop-at", "Checkpoint and exit after this step (resume later with --resume).")
    chat: bool = flag(True, "--chat", "Render with the tokenizer's chat template (as the harness does).",
                      off="--no-chat")
    only_success: bool = flag(True, "--only-success", "Skip failed teacher episodes.", off="--all-episodes")
    rules: dict[str, str] = flag(name="--rule", default_factory=dict, cli_type=list[str], to_cli=_env_pairs,
                                 from_cli=_rules,
                                 help="Segmentation rule per env, ENV=RULE (e.g. hotpotqa=hotpotqa-two-phase).")
    # few-shot exemplars of the prompts, {env or "*": spec} (agents/exemplars.py): the harness's
    # prompt for this student (an HF agent built from the checkpoint reads them back)
    exemplars: dict[str, str] = flag(name="--exemplars", default_factory=dict, cli_type=list[str],
                                     to_cli=_env_pairs, from_cli=_exemplars, help=EXEMPLARS_HELP)
    eval_frac: float = flag(0.1, "--eval-frac", "Share of episodes held out for the per-span eval loss.")
    eval_every: int = flag(50, "--eval-every", "Held-out loss every N steps (0: never).")
    save_every: int = flag(0, "--save-every", "Checkpoint every N steps (0: at the end only).")  # 0: only at the end
    log_every: int = flag(10, "--log-every", "Print a line every N steps when there is no progress bar.")
    # None: on for CUDA, off on CPU (measured slower there; docs/distill.md)
    bf16: bool | None = flag(None, "--bf16", "bf16 autocast (default: on for CUDA, off on CPU).", off="--no-bf16")
    device: str | None = flag(None, "--device", "cpu | cuda (default: cuda if available).")
    threads: int | None = flag(None, "--threads", "torch CPU threads.")
    progress: bool = flag(True, "--no-progress", "No progress bar (a line every --log-every steps).", invert=True)


def validate_train_config(cfg: TrainConfig) -> None:
    """What every way into training checks (the command, the Python API, an experiment's stage)."""
    from sad_eval.distill.curriculum import CURRICULA
    from sad_eval.distill.methods import METHODS

    if cfg.method not in METHODS:
        raise SadEvalError(f"unknown --method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.loss not in ("ce", "kl"):
        raise SadEvalError(f"unknown --loss {cfg.loss!r}; choose ce or kl")
    if cfg.curriculum not in CURRICULA:
        raise SadEvalError(f"unknown --curriculum {cfg.curriculum!r}; choose one of {', '.join(CURRICULA)}")
    if cfg.loss == "ce" and cfg.teacher:
        raise SadEvalError("--teacher is only used with --loss kl (ce trains on the trajectories' tokens)")
    if cfg.temperature <= 0:
        raise SadEvalError("--temperature must be positive")
    check_bounds(cfg)
    _validate_lora(cfg)


def _validate_lora(cfg: TrainConfig) -> None:
    from sad_eval.distill.students import SIZES

    if not cfg.lora_r:
        set_ = [f for f, on in (("--lora-alpha", cfg.lora_alpha is not None), ("--lora-dropout", cfg.lora_dropout),
                                ("--lora-targets", split_names(cfg.lora_targets) != list(LORA_TARGETS))) if on]
        if set_:
            raise SadEvalError(f"{', '.join(set_)} only apply with LoRA: add --lora-r R (e.g. 16)")
        return
    if cfg.student in SIZES and not cfg.init_from_layers:
        # LoRA freezes the embeddings and every weight: of a random-init model that leaves random
        # features with a low-rank correction, which trains far worse than full fine-tuning
        raise SadEvalError(f"--lora-r with --student {cfg.student} (random init) would freeze random weights: "
                           "use a pretrained student (smollm2-135m, a checkpoint, or --init-from-layers K), "
                           "or full fine-tuning (--lora-r 0)")
    if cfg.lora_alpha is not None and not cfg.lora_alpha > 0:
        raise SadEvalError(f"--lora-alpha must be positive, got {cfg.lora_alpha}")
    if not 0 <= cfg.lora_dropout < 1:
        raise SadEvalError(f"--lora-dropout must be in [0, 1), got {cfg.lora_dropout}")
    if not split_names(cfg.lora_targets):
        raise SadEvalError("--lora-targets is empty; e.g. " + ",".join(LORA_TARGETS))
