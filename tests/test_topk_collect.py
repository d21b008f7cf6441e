"""Teacher distributions at collection time: `Generation.top_logprobs`, OpenAI-style log-probs from
`serve model`, the client's mapping to student ids, and `collect --teacher-topk` sidecars that the
trainer matches turn by turn (tokens and context)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings

import pytest
import requests
import torch

from sad_eval.agents.base import EpisodeState
from sad_eval.agents.hf import DecodingConfig
from sad_eval.agents.openai_compat import EndpointError, OpenAIPolicy
from sad_eval.agents.prompts import build_messages, render
from sad_eval.errors import SadEvalError

torch.set_num_threads(1)


def _start(app):
    from waitress import create_server

    httpd = create_server(app, host="127.0.0.1", port=0, threads=8)

    def run() -> None:
        try:
            httpd.run()
        except OSError:
            pass  # closed from the test thread

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{httpd.effective_port}", httpd


@pytest.fixture(scope="module")
def served(tiny_checkpoint):
    from sad_eval.agents.serve_model import build

    app, server = build(str(tiny_checkpoint), name="tiny", max_batch=4)
    url, httpd = _start(app)
    yield url, server
    httpd.close()
    server.close()


def test_generation_top_logprobs_are_the_models_distribution(served, smol_tokenizer):
    """From the generation's own (raw) logits: equal to a teacher-forced forward pass, padded rows too."""
    _, server = served
    gen = server.gen
    prompts = ["Reasoning: I should look", "Hi"]
    for cfg in (DecodingConfig(max_new_tokens=5), DecodingConfig(max_new_tokens=5, temperature=0.7, seed=1)):
        outs = gen.generate(prompts, cfg, action_stop=False, top_logprobs=4)
        for prompt, g in zip(prompts, outs):
            assert len(g.token_ids) == g.tokens == len(g.top_logprobs) == len(g.logprobs)
            enc = smol_tokenizer(prompt, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = gen.model(torch.tensor([enc + g.token_ids])).logits[0].float()
            lp = torch.log_softmax(logits[len(enc) - 1:-1], -1)
            for i, (t, row) in enumerate(zip(g.token_ids, g.top_logprobs)):
                want = lp[i].topk(4)
                assert [a for a, _ in row] == want.indices.tolist()
                assert [v for _, v in row] == pytest.approx(want.values.tolist(), abs=1e-4)
                assert g.logprobs[i] == pytest.approx(float(lp[i, t]), abs=1e-4)  # temperature-1 value
            if cfg.temperature == 0:
                assert all(t == row[0][0] for t, row in zip(g.token_ids, g.top_logprobs))  # greedy = top-1


def test_serve_model_returns_openai_logprobs(served):
    url, server = served
    msgs = build_messages("alfworld", "Your task is to: put a mug in the sink.")
    d = requests.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": msgs, "max_tokens": 6, "temperature": 0, "logprobs": True,
        "top_logprobs": 3}).json()
    (choice,) = d["choices"]
    content = choice["logprobs"]["content"]
    assert len(content) == d["usage"]["completion_tokens"]
    assert b"".join(bytes(e["bytes"]) for e in content).decode("utf-8", "replace") == choice["message"]["content"]
    for e in content:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"} and len(e["top_logprobs"]) == 3
        assert e["top_logprobs"][0]["logprob"] >= e["top_logprobs"][-1]["logprob"]
        assert e["logprob"] == pytest.approx(e["top_logprobs"][0]["logprob"])  # greedy: chosen = most likely
    # logprobs alone: the chosen tokens, no alternatives
    d = requests.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": msgs, "max_tokens": 3, "temperature": 0, "logprobs": True}).json()
    assert all(e["top_logprobs"] == [] for e in d["choices"][0]["logprobs"]["content"])
    assert requests.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": msgs, "max_tokens": 3}).json()["choices"][0]["logprobs"] is None
    # completions: the legacy shape
    prompt = render(msgs, None, chat=False).text
    d = requests.post(f"{url}/v1/completions", timeout=60, json={
        "model": "tiny", "prompt": prompt, "max_tokens": 5, "temperature": 0, "logprobs": 2}).json()
    lp = d["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert all(len(alts) <= 2 and max(alts.values()) == pytest.approx(v) for alts, v in
               zip(lp["top_logprobs"], lp["token_logprobs"]))
    assert lp["text_offset"][0] == 0
    for body, needle in (({"top_logprobs": 2}, "needs 'logprobs'"), ({"logprobs": True, "top_logprobs": 50}, "top_logprobs"),
                         ({"logprobs": 3}, "'logprobs' must be true or false")):
        r = requests.post(f"{url}/v1/chat/completions", timeout=60,
                          json={"model": "tiny", "messages": msgs, "max_tokens": 2, **body})
        assert r.status_code == 400 and needle in r.json()["error"]["message"]


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_client_maps_endpoint_tokens_to_student_ids(served, smol_tokenizer, api):
    url, server = served
    state = EpisodeState(env="alfworld", task_id="t0", task="Your task is to: put a mug in the sink.")
    policy = OpenAIPolicy("tiny", url, api=api, decoding=DecodingConfig(max_new_tokens=8), top_logprobs=3,
                          tokenizer=smol_tokenizer, stop_at_action=False)
    (turn,) = policy.act([state])
    msgs = build_messages("alfworld", state.task)
    prompt = render(msgs, smol_tokenizer, chat=True).text if api == "chat" else render(msgs, None, chat=False).text
    (local,) = server.gen.generate([prompt], DecodingConfig(max_new_tokens=8), top_logprobs=3)
    n = len(turn.token_ids)
    assert n >= 1 and turn.token_ids == local.token_ids[:n]
    assert [[i for i, _ in row] for row in turn.top_logprobs] == [[i for i, _ in row] for row in local.top_logprobs[:n]]
    assert smol_tokenizer.decode(turn.token_ids).startswith(turn.raw)
    assert state.memory["messages"] == msgs
    policy.close()


def test_client_refuses_a_server_with_another_tokenizer(smol_tokenizer):
    from flask import Flask

    app = Flask("other-tokenizer")

    @app.post("/v1/chat/completions")
    def chat():  # a server whose vocabulary has a token SmolLM2's does not
        entry = {"token": "Reasoning: zq", "logprob": -0.1, "bytes": list(b"Reasoning: zq"),
                 "top_logprobs": [{"token": "Reasoning: zq", "logprob": -0.1, "bytes": list(b"Reasoning: zq")}]}
        return {"choices": [{"message": {"content": "Reasoning: zq"}, "logprobs": {"content": [entry]}}]}

    @app.post("/v1/completions")
    def completions():  # no log-probs at all
        return {"choices": [{"text": "Reasoning: x"}]}

    url, httpd = _start(app)
    state = EpisodeState(env="alfworld", task_id="t0", task="Your task is to: x.")
    try:
        p = OpenAIPolicy("m", url, top_logprobs=1, tokenizer=smol_tokenizer, retries=0, stop_at_action=False)
        with pytest.raises(EndpointError, match="tokenizer differs from the student's"):
            p.act([state])
        p = OpenAIPolicy("m", url, api="completions", top_logprobs=1, tokenizer=smol_tokenizer, retries=0,
                         stop_at_action=False)
        with pytest.raises(EndpointError, match="without log-probs"):
            p.act([state])
    finally:
        httpd.close()


def _collect(agent, out, k=3, n=2, **kw):
    from sad_eval.harness_cli import run_command
    from sad_eval.settings import RunSettings

    return run_command(RunSettings(agent=agent, env="hotpotqa", kind="collect", split="train", n=n, out=out,
                                   max_new_tokens=8, teacher_topk=k, progress=False, **kw), show_table=False)


def test_collect_writes_the_sidecar_from_hf_and_from_an_endpoint_alike(served, tiny_checkpoint, tmp_path, data_root):
    """`collect --teacher-topk`: the same greedy model, local and behind `serve model`, gives the same rows."""
    from safetensors import safe_open

    from sad_eval.distill.topk import TopK
    from sad_eval.trajectory import load_trajectories

    url, _ = served
    hf_out, api_out = tmp_path / "hf.jsonl", tmp_path / "api.jsonl"
    _collect(str(tiny_checkpoint), hf_out)
    _collect("openai:tiny", api_out, base_url=url)
    sides = [tmp_path / "hf.topk.safetensors", tmp_path / "api.topk.safetensors"]
    metas = [safe_open(str(p), framework="pt").metadata() for p in sides]
    assert [m["k"] for m in metas] == ["3", "3"] and all(m["per_turn_context"] == "True" for m in metas)
    # both fit their context as the HF policy does: the student's window, the endpoint's advertised length
    assert metas[0]["seq_len"] == "2048" and metas[1]["seq_len"] == "2048"
    assert metas[0]["chat_template"] == metas[1]["chat_template"] != ""
    hf, api = TopK([sides[0]]), TopK([sides[1]])
    eps = load_trajectories([hf_out])
    assert len(eps) == 2 and json.loads((tmp_path / "hf.manifest.json").read_text())["agent_config"]["teacher_topk"] == 3
    rows = 0
    for ep in eps:
        for t in range(len(ep.steps)):
            key = f"{ep.task_id}#{ep.sample}"
            a, b = hf.get(key, t), api.get(key, t)
            assert a is not None and b is not None
            assert a[0].tolist() == b[0].tolist()
            # the same top-k up to the order of near-ties (a random-weight model is nearly uniform, and
            # the two sides batch differently, so float noise can swap two equal log-probs)
            assert torch.allclose(a[2].float(), b[2].float(), atol=2e-2)
            for ids_a, ids_b, lp in zip(a[1].tolist(), b[1].tolist(), a[2].float().tolist()):
                clear = [j for j in range(len(lp)) if all(abs(lp[j] - lp[m]) > 1e-3 for m in range(len(lp)) if m != j)]
                assert all(ids_a[j] == ids_b[j] for j in clear)
            assert hf.context(key, t) == api.context(key, t) and len(hf.context(key, t)) == 32
            rows += 1
    assert rows >= 2
    # resuming a finished run keeps the sidecar; resuming with another K (or none) is refused
    _collect(str(tiny_checkpoint), hf_out)
    assert TopK([sides[0]]).index.keys() == hf.index.keys()
    for k in (5, 0):
        with pytest.raises(SadEvalError, match="teacher_topk: 3 there"):
            _collect(str(tiny_checkpoint), hf_out, k=k, n=3)
    assert TopK([sides[0]]).index.keys() == hf.index.keys()  # nothing written lost


def test_collect_topk_needs_a_model_teacher(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sad_eval.cli", "collect", "--teacher", "expert", "--env", "hotpotqa",
                        "-n", "1", "--teacher-topk", "3", "--out", str(tmp_path / "e.jsonl")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "model teacher" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "e.jsonl").exists()


class ForcedTeacher:
    """The HotPotQA oracle's turns, with the tiny model's top-k scored on exactly those tokens in the
    HF agent's context: a teacher whose turns parse, so the trainer has targets to match."""

    def __init__(self, ckpt, k: int, max_context: int):
        from sad_eval.agents.experts import make_expert
        from sad_eval.agents.hf import HFPolicy

        self.hf = HFPolicy(ckpt, max_context=max_context, top_logprobs=k)
        self.oracle, self.k = make_expert("hotpotqa"), k
        self.name, self.decoding, self.exemplars = "forced", self.hf.decoding, None
        self.gen, self.max_context, self.chat = self.hf.gen, self.hf.max_context, self.hf.chat

    def act(self, states):
        from sad_eval.segment import format_turn

        tok, model = self.gen.tokenizer, self.gen.model
        turns = self.oracle.act(states)
        for s, t in zip(states, turns):
            prompt = tok(self.hf.context(s), add_special_tokens=False)["input_ids"]
            ids = tok(format_turn(s.env, t.reasoning, t.action), add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].float(), -1)
            top = lp.topk(self.k)
            t.token_ids = ids
            t.top_logprobs = [list(zip(i.tolist(), v.tolist())) for i, v in zip(top.indices, top.values)]
        return turns


def test_collected_sidecar_trains_turn_by_turn_under_matching_contexts(tiny_checkpoint, tmp_path, data_root):
    from sad_eval.agents.experts import expert_env_kwargs
    from sad_eval.distill.trainer import TrainConfig, train
    from sad_eval.envs import make_env
    from sad_eval.harness import rollout
    from sad_eval.topk_collect import TopKRecorder, merge
    from sad_eval.topk_format import sidecar_path
    from sad_eval.trajectory import TrajectoryWriter

    out = tmp_path / "teacher.jsonl"
    teacher = TopKRecorder(ForcedTeacher(tiny_checkpoint, 4, max_context=1024), 4, out, "hotpotqa")
    with TrajectoryWriter(out) as w:
        def record(ep):
            teacher.write(ep)
            w.write(ep)

        from sad_eval.envs.hotpotqa import list_tasks

        rollout(lambda: make_env("hotpotqa", split="train", **expert_env_kwargs("hotpotqa")), teacher, "hotpotqa",
                "train", [(t, 0) for t in list_tasks("train")[:3]], batch=3, on_episode=record)
    side = merge(out, 4)
    assert side == sidecar_path(out)

    def run(name, **kw):
        base = dict(data=[str(out)], student=str(tiny_checkpoint), out=str(tmp_path / name), loss="kl",
                    max_steps=1, batch_size=2, seq_len=1024, reserve=128, eval_every=0, progress=False, threads=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return train(TrainConfig(**{**base, **kw}), log=lambda *a: None)

    s = run("same")
    assert s["topk"]["topk_turns"] > 0 and s["topk"]["topk_mismatch"] == 0
    assert s["topk"]["topk_context_mismatch"] == 0 and s["topk"]["topk_missing"] == 0
    # a shorter window elides observations the teacher saw: those turns are dropped, not misused
    short = run("short", seq_len=300, reserve=64)
    assert short["topk"]["topk_context_mismatch"] > 0
    with pytest.raises(SadEvalError, match="exemplars"):
        run("shots", exemplars={"hotpotqa": "react"})
    with pytest.raises(SadEvalError, match=r"chat True \(training: False\)"):
        run("plain", chat=False)


def test_context_check_compares_the_exemplars_of_the_sidecars_own_envs(tmp_path, smol_tokenizer):
    from sad_eval.distill.topk import TopK
    from sad_eval.topk_format import context_meta, write_sidecar

    rows = {("q#0", 0): (torch.tensor([1, 2]), torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2))}
    side = write_sidecar(tmp_path / "hp.topk.safetensors", rows, 2, 49152, contexts={("q#0", 0): bytes(32)},
                         **context_meta(smol_tokenizer, None, True, 128, {"hotpotqa": ""}))
    tk = TopK([side])
    # another env's exemplars (a second data file) and another budget (per-turn contexts) do not matter
    tk.check_context(context_meta(smol_tokenizer, 512, True, 64, {"hotpotqa": "", "alfworld": "abc"}))
    with pytest.raises(SadEvalError, match="exemplars"):
        tk.check_context(context_meta(smol_tokenizer, 512, True, 128, {"hotpotqa": "0123456789abcdef"}))
    assert tk.context("q#0", 0) == bytes(32) and tk.context("q#1", 0) is None
