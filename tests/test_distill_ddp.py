"""Two CPU processes (gloo) make the same update as one process with gradient accumulation."""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from sad_eval.distill.trainer import TrainConfig, train

FIXTURE = str(Path(__file__).parent / "data" / "distill_teacher.jsonl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(student: str, out: str, **kw) -> TrainConfig:
    base = dict(data=[FIXTURE], student=student, out=out, max_steps=3, lr=3e-3, batch_size=1, seq_len=256,
                reserve=0, eval_every=0, progress=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def make_tiny(path: Path, tokenizer) -> Path:
    from transformers import AutoModelForCausalLM

    from sad_eval.distill.students import llama_config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(llama_config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                  num_key_value_heads=1, intermediate_size=128)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _worker(rank: int, world: int, port: int, student: str, out: str, lora_r: int = 0) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import torch.distributed as dist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(_config(student, out, eval_every=3, eval_frac=0.2, lora_r=lora_r), log=lambda *a: None)
    dist.destroy_process_group()


# DDP over a model with frozen weights too (LoRA; slow: another ~20 s of two spawned processes)
@pytest.mark.parametrize("lora_r", [pytest.param(0, id="full"), pytest.param(8, id="lora", marks=pytest.mark.slow)])
def test_two_process_ddp_matches_grad_accumulation(tmp_path, smol_tokenizer, lora_r):
    from safetensors.torch import load_file

    student = str(make_tiny(tmp_path / "tiny", smol_tokenizer))
    ddp_out, one_out = tmp_path / "ddp", tmp_path / "one"
    mp.start_processes(_worker, args=(2, _free_port(), student, str(ddp_out), lora_r), nprocs=2, join=True,
                       start_method="spawn")
    assert (ddp_out / "model.safetensors").is_file() and (ddp_out / "rng_rank1.pt").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(_config(student, str(one_out), grad_accum=2, eval_every=3, eval_frac=0.2, lora_r=lora_r),
              log=lambda *a: None)
    a, b = load_file(ddp_out / "model.safetensors"), load_file(one_out / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    base = load_file(Path(student) / "model.safetensors")
    assert any(not torch.equal(a[k], base[k]) for k in a)  # it trained (with LoRA: the merged adapters)
    la = (ddp_out / "loss_log.jsonl").read_text().splitlines()
    lb = (one_out / "loss_log.jsonl").read_text().splitlines()
    assert len(la) == len(lb)
