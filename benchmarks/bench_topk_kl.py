"""How the cached top-k KL (`losses.topk_kl_per_token`) relates to the full KL, on real models.

Teacher SmolLM2-135M, student its first 8 layers (an untrained `--init-from-layers 8` start), 400
tokens of the fixture teacher trajectories; the teacher's top-k stored as float16 as the sidecar
stores it. Prints, per k and T, the mean cached / full ratio, the per-token extremes, and the loss at
student = teacher (the float16 storage's rounding floor). About 30 s on one thread.

    python benchmarks/bench_topk_kl.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from sad_eval.distill import losses
from sad_eval.models import SMOLLM2, load_tokenizer, resolve_model

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "distill_teacher.jsonl"


def main() -> None:
    torch.set_num_threads(1)
    path = resolve_model(SMOLLM2)
    tok = load_tokenizer(SMOLLM2)
    teacher = AutoModelForCausalLM.from_pretrained(path).eval()
    student = copy.deepcopy(teacher)
    student.model.layers = student.model.layers[:8]
    student.config.num_hidden_layers = 8
    text = ""
    for line in FIXTURE.read_text().splitlines():
        text += json.dumps(json.loads(line))[:1500]
        if len(text) > 3000:
            break
    ids = tok(text, return_tensors="pt").input_ids[:, :400]
    with torch.no_grad():
        zt, zs = teacher(ids).logits[0].float(), student(ids).logits[0].float()
    lp = torch.log_softmax(zt, -1)
    print("k  T    cached/full  per-token min..max  loss at student=teacher")
    for k in (5, 20):
        top = lp.topk(k, -1)
        stored = top.values.half()
        for t in (0.5, 1.0, 2.0):
            full = losses.kl_per_token(zs, zt, t).double()
            cached = losses.topk_kl_per_token(zs, top.indices, stored, t).double()
            fixed = losses.topk_kl_per_token(zt, top.indices, stored, t).mean()
            r = cached / full
            print(f"{k:<2} {t:<4} {float(cached.mean() / full.mean()):.2f}         "
                  f"{float(r.min()):.2f}..{float(r.max()):.2f}          {float(fixed):.1e}")


if __name__ == "__main__":
    main()
