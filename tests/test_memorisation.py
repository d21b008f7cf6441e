"""The memorisation check: a guard on train/eval alignment (prompts, windows, masks, stop rules,
decoding). A `tiny` student distilled on a handful of train tasks and evaluated on the same tasks
must replay them: >= 75% TSR on WebShop and HotPotQA (ALFWorld is reported). Memorised
trajectories need no generalisation, so a failure here is a bug in the plumbing, not a capacity
limit. Slow (`make bench`): run it before every change to prompts, windows, masks, stop rules or
decoding. This is not an evaluation: these are train tasks.
"""

from __future__ import annotations

import json

import pytest

from sad_eval.agents.experts import expert_env_kwargs
from sad_eval.agents.hf import DecodingConfig
from sad_eval.agents.registry import AgentSpec
from sad_eval.run import RunConfig, execute

pytestmark = pytest.mark.slow

TASKS = {"webshop": ("oracle", 8), "hotpotqa": ("oracle", 8), "alfworld": ("expert", 4)}
BUDGET = 192


def _collect(tmp_path, env: str):
    teacher, n = TASKS[env]
    out = tmp_path / f"{env}-teacher.jsonl"
    execute(RunConfig(spec=AgentSpec(agent=teacher, env=env), split="train", out=out, limit=n, subset="first",
                      env_kwargs=expert_env_kwargs(env), kind="collect"), progress=False)
    return out


def test_tiny_student_replays_its_train_tasks(tmp_path, data_root):
    from sad_eval.distill.trainer import TrainConfig, train

    data = {env: _collect(tmp_path, env) for env in TASKS}
    ckpt = tmp_path / "tiny"
    train(TrainConfig(data=[str(p) for p in data.values()], student="tiny", out=str(ckpt), method="sad", loss="ce",
                      max_steps=300, lr=2e-3, batch_size=4, seq_len=2048, reserve=BUDGET, eval_frac=0.0,
                      eval_every=0, threads=1, progress=False), log=lambda *a: None)
    tsr = {}
    for env, (_, n) in TASKS.items():
        eps = execute(RunConfig(spec=AgentSpec(agent=str(ckpt), env=env, decoding=DecodingConfig(max_new_tokens=BUDGET)),
                                split="train", out=tmp_path / f"{env}-student.jsonl", limit=n, subset="first",
                                batch=n), progress=False)
        tsr[env] = sum(e.success for e in eps) / len(eps)
        assert all(s.obs_visible for e in eps for s in e.steps)
    print("memorisation TSR", json.dumps(tsr))
    assert tsr["webshop"] >= 0.75 and tsr["hotpotqa"] >= 0.75, tsr
