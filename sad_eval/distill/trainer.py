"""The distillation training loop: one readable function, `train`.

Shape of the loop (in the spirit of Karpathy's nanoGPT train.py; written from scratch): AdamW
(fused kernel; decay on matrices only), linear warmup then cosine decay to ``min_lr_ratio·lr``, gradient
clipping, gradient accumulation, optional bf16 autocast, periodic held-out loss per span,
checkpoint + resume. Runs unchanged under ``torchrun``/``accelerate launch``: with WORLD_SIZE > 1
the process group is initialised from the environment (gloo on CPU, nccl on GPU) and the model is
wrapped in DistributedDataParallel.

Batches. Every optimizer step takes a *global* batch of ``batch_size · grad_accum · world_size``
windows from the curriculum schedule (a deterministic function of seed and step, identical on
every rank); rank r takes rows r, r+W, … and splits them into ``grad_accum`` micro-batches. Span
means are taken over the whole global batch: each token's weight is λ_g / N_g with N_g counted
over the global batch (known before any forward pass), and the loss is multiplied by W because DDP
averages gradients over ranks. So 1 process × grad_accum 2 and 2 processes × grad_accum 1 make the
same update (tests check it).

Only supervised positions go through the output layer: the decoder's hidden states are gathered
at the positions that predict a target token (logits at t predict token t+1), and the LM head
(49152 × d for SmolLM2) runs on those rows only. Masked positions never produce logits, so their
gradient is exactly zero.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from sad_eval.distill import losses
from sad_eval.distill.batching import pad_batch
from sad_eval.distill.checkpoint import (ARGS_FILE, LOG_FILE, STATE_FILE, load_state, recover_checkpoint,
                                         save_checkpoint, set_rng_state, truncate_log)
from sad_eval.distill.config import TrainConfig, validate_train_config  # noqa: F401 (their old home)
from sad_eval.distill.curriculum import Schedule, complexity
from sad_eval.distill.distributed import all_reduce, init_distributed
from sad_eval.distill.methods import METHODS, groups_for, random_span_masks
from sad_eval.errors import SadEvalError

# ------------------------------------------------------------------ small helpers

# the span kinds each method's loss is made of (token / lm supervise whole sequences)
METHOD_SPANS = {"sad": ("REASON", "ACT"), "no-seg": ("REASON", "ACT"), "random-span": ("REASON", "ACT"),
                "reason-only": ("REASON",), "action-only": ("ACT",)}


def require_spans(cfg: "TrainConfig", episodes, bstats) -> None:
    """Refuse a span method on data without those spans (it would train on nothing: ``reason nan``),
    with the segmenter's own message for the first episode used."""
    from sad_eval.segment import linearize, require_reason_and_act, segment

    need = METHOD_SPANS.get(cfg.method, ())
    have = {"REASON": bstats.reason_tokens > 0, "ACT": bstats.act_tokens > 0}
    if all(have[k] for k in need):
        return
    ep = next((e for e in episodes if e.steps and e.status == "ok" and (e.success or not cfg.only_success)), None)
    where = f"{', '.join(map(str, cfg.data))}: no episode has the spans --method {cfg.method} trains on; e.g. episode"
    if ep is not None:
        spans = segment(linearize(ep.steps, ep.env), ep.env, cfg.rules.get(ep.env))
        require_reason_and_act(spans, f"{where} {ep.task_id}")
    raise SadEvalError(f"{where}s have no {' / '.join(k for k in need if not have[k])} span")

def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to lr, then cosine decay to min_lr_ratio·lr at max_steps."""
    warm = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, int(0.05 * cfg.max_steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    span = max(1, cfg.max_steps - warm)
    progress = min(1.0, (step - warm) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


def _direct_head(model) -> bool:
    """Whether logits = lm_head(base_model(x)) for this architecture (no softcapping/scaling)."""
    c = model.config
    return (getattr(model, "base_model", model) is not model and model.get_output_embeddings() is not None
            and getattr(c, "final_logit_softcapping", None) is None and getattr(c, "logit_scale", None) is None)


def selected_logits(model, input_ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Logits [N, V] at positions (rows, cols) only (cols = target position − 1)."""
    if _direct_head(model):
        out = model.base_model(input_ids=input_ids, use_cache=False)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows * hidden.shape[1] + cols)
        return model.get_output_embeddings()(flat)
    return model(input_ids=input_ids, use_cache=False).logits[rows, cols]


class SelectedLogits(nn.Module):
    """The student behind one forward (what DDP wraps): ids -> logits at selected positions."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, rows, cols):
        return selected_logits(self.model, input_ids, rows, cols)


# ------------------------------------------------------------------ data preparation

@dataclass
class Prepared:
    """One window as tensors: ids, the method's group masks, the true span masks, selection."""

    ids: list[int]
    groups: list[torch.Tensor]  # per group: bool [T] over target tokens
    reason: torch.Tensor  # true REASON mask (logging)
    act: torch.Tensor
    select: torch.Tensor  # union: positions whose logits are computed
    counts: list[int]
    topk_ids: torch.Tensor | None = None  # [T, k] rows for target positions (top-k teacher)
    topk_lp: torch.Tensor | None = None


def prepare(examples, cfg: TrainConfig, topk=None) -> tuple[list[Prepared], list[str], dict[str, int]]:
    """Tensors per window for the configured method; with a top-k cache, attach teacher rows and
    drop target tokens that have none."""
    stats = {"topk_turns": 0, "topk_missing": 0, "topk_mismatch": 0, "topk_context_mismatch": 0}
    out, names = [], []
    for i, ex in enumerate(examples):
        r = torch.tensor(ex.m_reason, dtype=torch.bool)
        a = torch.tensor(ex.m_act, dtype=torch.bool)
        traj = torch.tensor(ex.m_traj, dtype=torch.bool)
        rand = None
        if cfg.method == "random-span":
            rr, ra = random_span_masks(ex.m_reason, ex.m_act, ex.m_traj, random.Random(cfg.seed * 7919 + i))
            rand = (torch.tensor(rr, dtype=torch.bool), torch.tensor(ra, dtype=torch.bool))
        groups = groups_for(cfg.method, r, a, traj, cfg.lambda_reason, cfg.lambda_act, rand)
        names = [n for n, _, _ in groups]
        masks = [m for _, m, _ in groups]
        tk_ids = tk_lp = None
        if topk is not None:
            have = torch.zeros(len(ex.input_ids), dtype=torch.bool)
            tk_ids = torch.zeros((len(ex.input_ids), topk.k), dtype=torch.long)
            tk_lp = torch.zeros((len(ex.input_ids), topk.k), dtype=torch.float32)
            for turn, t0, t1 in ex.turn_tokens:
                got = topk.get(ex.key, turn)
                if got is None:
                    stats["topk_missing"] += 1
                    continue
                ids, tids, tlp = got
                if ids.tolist() != ex.input_ids[t0:t1]:
                    stats["topk_mismatch"] += 1
                    continue
                ctx = topk.context(ex.key, turn)  # collection-time sidecars: the context the teacher saw
                if ctx is not None and ctx != ex.turn_context.get(turn):
                    stats["topk_context_mismatch"] += 1
                    continue
                stats["topk_turns"] += 1
                have[t0:t1] = True
                tk_ids[t0:t1] = tids.long()
                tk_lp[t0:t1] = tlp.float()
            masks = [m & have for m in masks]
            r, a = r & have, a & have
        select = r | a
        for m in masks:
            select = select | m
        out.append(Prepared(ex.input_ids, masks, r, a, select, [int(m.sum()) for m in masks], tk_ids, tk_lp))
    weights = [w for _, _, w in groups_for(cfg.method, [0], [0], [0], cfg.lambda_reason, cfg.lambda_act,
                                           ([0], [0]))]
    return out, list(zip(names, weights)), stats


def split_by_episode(examples, frac: float, seed: int):
    """Hold out whole episodes (about ``frac`` of them) for evaluation."""
    keys = sorted({e.key for e in examples})
    if frac <= 0 or len(keys) < 2:
        return list(range(len(examples))), []
    rng = random.Random(seed)
    rng.shuffle(keys)
    held = set(keys[:max(1, round(frac * len(keys)))])
    train = [i for i, e in enumerate(examples) if e.key not in held]
    return train, [i for i, e in enumerate(examples) if e.key in held]


# ------------------------------------------------------------------ one micro-batch

def micro_batch(items: list[Prepared], pad_id: int, device):
    """Padded ids and the flattened selection: rows/cols index the *predicting* positions."""
    ids, real = pad_batch([p.ids for p in items], pad_id)
    t = ids.shape[1]

    def stack(get):
        m = torch.zeros((len(items), t), dtype=torch.bool)
        for i, p in enumerate(items):
            v = get(p)
            m[i, :len(v)] = v
        return m

    sel = stack(lambda p: p.select)
    rows, tgt = sel.nonzero(as_tuple=True)
    batch = {
        "ids": ids.to(device), "rows": rows.to(device), "cols": (tgt - 1).to(device),
        "targets": ids[rows, tgt].to(device),
        "groups": [stack(lambda p, g=g: p.groups[g])[rows, tgt].to(device) for g in range(len(items[0].groups))],
        "reason": stack(lambda p: p.reason)[rows, tgt].to(device),
        "act": stack(lambda p: p.act)[rows, tgt].to(device),
        "tokens": int(real.sum()),
    }
    if items[0].topk_ids is not None:
        k = items[0].topk_ids.shape[1]
        tids = torch.zeros((len(items), t, k), dtype=torch.long)
        tlp = torch.zeros((len(items), t, k))
        for i, p in enumerate(items):
            tids[i, :len(p.ids)] = p.topk_ids
            tlp[i, :len(p.ids)] = p.topk_lp
        batch["topk_ids"], batch["topk_lp"] = tids[rows, tgt].to(device), tlp[rows, tgt].to(device)
    return batch


def per_token_loss(logits: torch.Tensor, batch: dict, cfg: TrainConfig, teacher=None) -> torch.Tensor:
    if cfg.loss == "ce":
        return losses.ce_per_token(logits, batch["targets"])
    if teacher is not None:
        with torch.no_grad():
            t_logits = selected_logits(teacher, batch["ids"], batch["rows"], batch["cols"])
        return losses.kl_per_token(logits, t_logits, cfg.temperature)
    return losses.topk_kl_per_token(logits, batch["topk_ids"], batch["topk_lp"], cfg.temperature)


# ------------------------------------------------------------------ the loop

def train(cfg: TrainConfig, log: Callable[[str], Any] = print) -> dict:
    """Train a student; returns a summary (steps, final losses, throughput, peak memory)."""
    import warnings

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from sad_eval.distill import students
    from sad_eval.distill.examples import build_examples, episode_exemplars
    from sad_eval.trajectory import load_trajectories

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if cfg.method not in METHODS:
        raise SadEvalError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.loss not in ("ce", "kl"):
        raise SadEvalError(f"unknown loss {cfg.loss!r}; choose ce or kl")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    d = init_distributed(device.type)
    if device.type == "cuda" and d.world > 1:
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    say = log if d.main else (lambda *a, **k: None)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise SadEvalError(f"--out {out} is a file; a checkpoint is a directory")
    if d.main:
        recover_checkpoint(out)  # a kill during a checkpoint switch
        out.mkdir(parents=True, exist_ok=True)
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()

    # -- resume point
    state = None
    if cfg.resume and (out / STATE_FILE).is_file():
        state = load_state(out / STATE_FILE)
        if state.get("world", 1) != d.world:
            say(f"note: resuming a {state.get('world', 1)}-process run on {d.world} processes")
    elif cfg.resume:
        say(f"no checkpoint in {out}; starting fresh")

    # -- models and tokenizer
    torch.manual_seed(cfg.seed)
    if state is not None and bool(state.get("lora")) != bool(cfg.lora_r):
        raise SadEvalError(f"{out} was trained {'with' if state.get('lora') else 'without'} LoRA: resume with "
                           "the same --lora-r, or start a new --out")
    if state is not None and not cfg.lora_r:
        model = students._load(out, torch.float32)
    else:  # LoRA resumes on the base it started from (its checkpoint is merged): see distill/lora.py
        model, tok_path = students.build_student(cfg.student, cfg.init_from_layers, cfg.init_source, cfg.seed)
    if state is not None:
        tok_path = out
    lora = None
    if cfg.lora_r:
        from sad_eval.distill.lora import Lora

        lora = Lora(model, cfg)
        model = lora.model
        if state is not None:
            lora.load(state["lora"], str(out))
        say(f"LoRA r {cfg.lora_r}: {lora.trainable():,} of {students.param_count(model):,} parameters trainable")
    tokenizer = _load_tokenizer(AutoTokenizer, tok_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    teacher, topk = None, None
    if cfg.loss == "kl":
        if cfg.teacher:
            teacher = students.load_teacher(cfg.teacher)
            t_tok = _load_tokenizer(AutoTokenizer, students.resolve_model(cfg.teacher))
            students.check_same_vocab(tokenizer, t_tok, teacher, model)
            teacher.to(device)
        else:
            from sad_eval.distill.topk import TopK, sidecar_path

            if cfg.method in ("token", "random-span", "lm"):
                raise SadEvalError(f"--method {cfg.method} supervises tokens outside the assistant turns, which a "
                                   "top-k cache does not cover: pass an online --teacher")
            topk = TopK(cfg.teacher_topk or [sidecar_path(p) for p in cfg.data])
            if topk.vocab_size and topk.vocab_size != model.get_output_embeddings().weight.shape[0]:
                raise SadEvalError(f"top-k cache vocab {topk.vocab_size} differs from the student's "
                                   f"{model.get_output_embeddings().weight.shape[0]} logits")
    model.to(device)
    model.train()
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False

    # -- data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        episodes = load_trajectories(cfg.data)
        shots = episode_exemplars(cfg.exemplars) if cfg.exemplars else ()
        examples, bstats = build_examples(episodes, tokenizer, cfg.seq_len, cfg.chat, cfg.only_success,
                                          cfg.rules, exemplars=shots, reserve=cfg.reserve)
    if topk is not None:
        from sad_eval.distill.examples import exemplar_digests
        from sad_eval.distill.topk import context_meta

        topk.check_context(context_meta(tokenizer, cfg.seq_len, cfg.chat, cfg.reserve,
                                        exemplar_digests(cfg.exemplars, {ep.env for ep in episodes})))
    for w in caught:
        say(f"warning: {w.message}")
    if not examples:
        raise SadEvalError(f"no training sequences from {', '.join(map(str, cfg.data))} ({bstats.summary()})")
    require_spans(cfg, episodes, bstats)
    say(f"data: {bstats.summary()}")
    prepared, group_info, pstats = prepare(examples, cfg, topk)
    if topk is not None:
        say(f"top-k teacher: {pstats['topk_turns']} turns matched, {pstats['topk_missing']} missing, "
            f"{pstats['topk_mismatch']} with different tokens, {pstats['topk_context_mismatch']} under "
            "another context (dropped)")
        if pstats["topk_turns"] == 0:
            raise SadEvalError("the top-k cache covers none of the training turns")
    train_idx, eval_idx = split_by_episode(examples, cfg.eval_frac, cfg.seed)
    if not train_idx:
        raise SadEvalError("no training sequences left after the held-out split")

    # -- curriculum
    entropy = {}
    if cfg.curriculum != "none" and cfg.gamma and (teacher is not None or topk is not None):
        entropy = _teacher_entropy(examples, prepared, teacher, device, pad_id)
    per_ep: dict[str, list[float]] = {}
    for e in examples:
        v = per_ep.setdefault(e.key, [0.0, 0.0])
        v[0] += sum(e.m_reason)
        v[1] += sum(e.m_act)
    scores = [complexity(*per_ep[examples[i].key], entropy.get(examples[i].key, 0.0), cfg.alpha, cfg.beta,
                         cfg.gamma) for i in train_idx]
    gsize = cfg.batch_size * cfg.grad_accum * d.world
    sched = Schedule(scores, gsize, cfg.curriculum, cfg.seed,
                     cfg.competence_steps or max(1, cfg.max_steps // 2), cfg.c0)

    # -- optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel: one pass over the parameters (about 4x faster than foreach on CPU)
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError, ValueError):
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        rng_file = out / f"rng_rank{d.rank}.pt"
        set_rng_state(load_state(rng_file) if (d.world > 1 and rng_file.is_file()) else state["rng"])
        if d.main:
            truncate_log(out / LOG_FILE, start)
        say(f"resumed from step {start}")

    net = SelectedLogits(model)
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    use_bf16 = cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext

    if d.main:
        from sad_eval.statefiles import write_json_atomic

        write_json_atomic(out / ARGS_FILE, {**asdict(cfg), "step": start})
    def checkpoint(step: int, extra: dict | None = None) -> None:
        # with LoRA: a plain merged model for the harness, the unmerged adapters for --resume
        saved = lora.merged() if (lora is not None and d.main) else model
        save_checkpoint(out, saved, tokenizer, optimizer, step, cfg, d, extra,
                        state_extra={"lora": lora.state()} if lora is not None else None)

    def record(row: dict) -> None:  # one append per row: a killed run keeps every logged step
        if d.main:
            with open(out / LOG_FILE, "a") as f:
                f.write(json.dumps(row) + "\n")

    def evaluate(step: int) -> dict | None:
        if not eval_idx:
            return None
        model.eval()
        sums = [0.0] * 4
        mine = eval_idx[d.rank::d.world]
        with torch.no_grad(), autocast():
            for b0 in range(0, len(mine), cfg.batch_size):
                batch = micro_batch([prepared[i] for i in mine[b0:b0 + cfg.batch_size]], pad_id, device)
                logits = selected_logits(model, batch["ids"], batch["rows"], batch["cols"])
                lt = per_token_loss(logits, batch, cfg, teacher).float()
                sums[0] += float((lt * batch["reason"]).sum())
                sums[1] += float(batch["reason"].sum())
                sums[2] += float((lt * batch["act"]).sum())
                sums[3] += float(batch["act"].sum())
        model.train()
        s = all_reduce(sums, d)
        row = {"step": step, "split": "eval", "reason": s[0] / s[1] if s[1] else None,
               "act": s[2] / s[3] if s[3] else None}
        record(row)
        return row

    # -- loop
    tokens_seen, t_start = 0, time.perf_counter()
    last = {"loss": float("nan"), "reason": float("nan"), "act": float("nan")}
    progress = _Progress(cfg.progress and d.main, cfg.max_steps, start)
    if start == 0 and cfg.eval_every:
        ev = evaluate(0)
        if ev:
            say(f"step 0 held-out: reason {_f(ev['reason'])} act {_f(ev['act'])}")
    if d.main and torch.cuda.is_available() and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    end = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
    for step in range(start, end):
        t0, c0 = time.perf_counter(), time.process_time()
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        glob = [train_idx[j] for j in sched.batch(step)]
        counts = [sum(prepared[i].counts[g] for i in glob) for g in range(len(group_info))]
        mine = glob[d.rank::d.world]
        micro = [mine[m * cfg.batch_size:(m + 1) * cfg.batch_size] for m in range(cfg.grad_accum)]
        stats = [0.0] * 5  # loss, reason sum, reason n, act sum, act n
        n_tok = 0
        for m, rows in enumerate(micro):
            if not rows:
                continue
            batch = micro_batch([prepared[i] for i in rows], pad_id, device)
            sync = nullcontext() if (d.world == 1 or m == len(micro) - 1) else net.no_sync()
            with sync:
                with autocast():
                    logits = net(batch["ids"], batch["rows"], batch["cols"])
                lt = per_token_loss(logits, batch, cfg, teacher)
                groups = [(n, gm, w) for (n, w), gm in zip(group_info, batch["groups"])]
                loss = losses.group_loss(lt, groups, counts) * d.world
                loss.backward()
            with torch.no_grad():
                stats[0] += float(loss) / d.world
                stats[1] += float((lt * batch["reason"]).sum())
                stats[2] += float(batch["reason"].sum())
                stats[3] += float((lt * batch["act"]).sum())
                stats[4] += float(batch["act"].sum())
            n_tok += batch["tokens"]
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        s = all_reduce(stats + [n_tok], d)
        tokens_seen += int(s[5])
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        last = {"loss": s[0], "reason": s[1] / s[2] if s[2] else float("nan"),
                "act": s[3] / s[4] if s[4] else float("nan")}
        row = {"step": step + 1, "split": "train", "loss": last["loss"], "reason": _nan(last["reason"]),
               "act": _nan(last["act"]), "lr": lr, "grad_norm": float(gnorm) if gnorm is not None else None,
               "tokens": int(s[5]), "tok_per_s": s[5] / dt if dt > 0 else None, "step_s": dt, "cpu_s": cpu,
               "epoch": sched.epoch(step + 1)}
        record(row)
        progress.update(step + 1, row)
        if not progress.enabled and cfg.log_every and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps):
            say(f"step {step + 1}/{cfg.max_steps} loss {last['loss']:.4f} reason {_f(last['reason'])} "
                f"act {_f(last['act'])} lr {lr:.2e} {row['tok_per_s'] or 0:.0f} tok/s")
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < end:
            ev = evaluate(step + 1)
            if ev:
                say(f"step {step + 1} held-out: reason {_f(ev['reason'])} act {_f(ev['act'])}")
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < end:
            checkpoint(step + 1)
    progress.close()
    elapsed = time.perf_counter() - t_start
    final_eval = evaluate(end) if cfg.eval_every else None
    summary = {"steps": end, "start": start, "loss": last["loss"], "reason": last["reason"],
               "act": last["act"], "eval": final_eval, "tokens": tokens_seen,
               "tok_per_s": tokens_seen / elapsed if elapsed > 0 else None, "elapsed_s": elapsed,
               "peak_mem_mb": _peak_mem_mb(device),
               "params": students.param_count(model) - (lora.trainable() if lora else 0),  # the saved model's
               "trainable_params": sum(p.numel() for p in params),
               "sequences": len(examples), "train_sequences": len(train_idx), "eval_sequences": len(eval_idx),
               "data": asdict(bstats), "topk": pstats if topk is not None else None}
    checkpoint(end, {"summary": summary})
    say(f"saved {out} (step {end}/{cfg.max_steps}; {summary['tok_per_s'] or 0:.0f} tok/s)")
    return summary


def _load_tokenizer(auto, path):
    """The tokenizer saved with a checkpoint; a checkpoint without one is one clear error."""
    try:
        return auto.from_pretrained(path)
    except Exception as e:  # transformers raises many kinds (OSError, ValueError, TypeError, ...)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SadEvalError(f"no usable tokenizer in {path} ({first}); a checkpoint needs its tokenizer "
                           "files (tokenizer.json, tokenizer_config.json) beside the weights") from None


def _teacher_entropy(examples, prepared, teacher, device, pad_id) -> dict[str, float]:
    """Mean teacher entropy over each episode's REASON ∪ ACT targets (for the curriculum's γ·H)."""
    sums: dict[str, list[float]] = {}
    for ex, p in zip(examples, prepared):
        tgt = (p.reason | p.act).nonzero(as_tuple=True)[0]
        if len(tgt) == 0:
            continue
        if teacher is not None:
            ids = torch.tensor([p.ids], device=device)
            with torch.no_grad():
                logits = selected_logits(teacher, ids, torch.zeros_like(tgt).to(device), (tgt - 1).to(device))
            h = losses.entropy_per_token(logits)
        else:
            h = losses.topk_entropy(p.topk_lp[tgt])
        v = sums.setdefault(ex.key, [0.0, 0])
        v[0] += float(h.sum())
        v[1] += len(tgt)
    return {k: s / n for k, (s, n) in sums.items() if n}


def _peak_mem_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _f(x) -> str:
    return "nan" if x is None or x != x else f"{x:.4f}"


def _nan(x):
    return None if x is None or x != x else x


class _Progress:
    """A rich progress bar with the losses per span and tokens/s (off when not wanted)."""

    def __init__(self, enabled: bool, total: int, start: int):
        import sys

        self.enabled = enabled and sys.stderr.isatty()
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("distill"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          TextColumn("{task.fields[info]}"))
        self.p.start()
        self.task = self.p.add_task("train", total=total, completed=start, info="")

    def update(self, step: int, row: dict) -> None:
        if self.enabled:
            info = (f"loss {row['loss']:.3f} [blue]R {_f(row['reason'])}[/] [red]A {_f(row['act'])}[/] "
                    f"{row['tok_per_s'] or 0:.0f} tok/s")
            self.p.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.enabled:
            self.p.stop()
