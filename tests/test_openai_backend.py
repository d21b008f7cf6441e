"""The OpenAI-compatible backend: `sad-eval serve model` and `OpenAIPolicy`, over real HTTP on loopback.

A tiny random-weight Llama (SmolLM2's tokenizer, 2 layers, hidden 64) is served by the real
server (waitress in a thread, and once through the CLI in a subprocess); small recording Flask
apps stand in for endpoints whose answers a test must control (order, retries, headers).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from sad_eval.agents.base import EpisodeState
from sad_eval.agents.hf import DecodingConfig, Generation
from sad_eval.agents.openai_compat import EndpointError, OpenAIPolicy, make_openai_policy, normalize_base_url
from sad_eval.agents.prompts import build_messages, render
from sad_eval.errors import SadEvalError
from sad_eval.trajectory import Step

KEY_VAR = "SAD_EVAL_TEST_ENDPOINT_KEY"
FAKE_KEY = "sk-test-5f3a9c1e77d2b4"  # a made-up key: must never show in errors or reprs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(app):
    """Serve a WSGI app with waitress on a free loopback port in a thread; returns (base url, server)."""
    from waitress import create_server

    httpd = create_server(app, host="127.0.0.1", port=0, threads=8)

    def run() -> None:
        try:
            httpd.run()
        except OSError:
            # closing from the test thread can pull the socket out from under the loop's select();
            # that is the shutdown, not a failure (an error while still serving would be)
            sock = getattr(httpd, "socket", None)
            if sock is not None and sock.fileno() != -1:
                raise

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{httpd.effective_port}", httpd


def _states(n: int = 3) -> list[EpisodeState]:
    out = []
    for i in range(n):
        steps = [Step("I should look around.", "look", "You are in a kitchen.")] if i == 1 else []
        out.append(EpisodeState(env="alfworld", task_id=f"t{i}", task=f"Your task is to: put apple {i} in fridge."
                                , steps=steps))
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, smol_tokenizer) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smol_tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny"
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def served(tiny_model):
    """The real model server (no key) on loopback: yields (base url, ModelServer)."""
    from sad_eval.agents.serve_model import build

    app, server = build(str(tiny_model), max_batch=4)
    url, httpd = _start(app)
    yield url, server
    httpd.close()
    server.close()


# ---------------------------------------------------------------- the real server


def test_models_lists_the_served_model(served):
    url, server = served
    data = requests.get(f"{url}/v1/models", timeout=10).json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["tiny"]
    assert data["data"][0]["owned_by"] == "sad-eval"


def test_chat_and_completions_are_well_formed(served):
    url, _ = served
    r = requests.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 5, "temperature": 0})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["object"] == "chat.completion" and d["model"] == "tiny" and d["id"].startswith("chatcmpl-")
    (choice,) = d["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["finish_reason"] in ("stop", "length")
    u = d["usage"]
    assert u["prompt_tokens"] > 0 and 0 <= u["completion_tokens"] <= 5
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]

    r = requests.post(f"{url}/v1/completions", timeout=60, json={
        "model": "tiny", "prompt": ["Reasoning: a", "Reasoning: b"], "max_tokens": 4, "temperature": 0.7,
        "top_p": 0.9, "seed": 3})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["object"] == "text_completion" and [c["index"] for c in d["choices"]] == [0, 1]
    assert all(isinstance(c["text"], str) for c in d["choices"])
    assert d["usage"]["completion_tokens"] <= 8
    again = requests.post(f"{url}/v1/completions", timeout=60, json={
        "model": "tiny", "prompt": ["Reasoning: a", "Reasoning: b"], "max_tokens": 4, "temperature": 0.7,
        "top_p": 0.9, "seed": 3}).json()
    assert [c["text"] for c in again["choices"]] == [c["text"] for c in d["choices"]]  # seeded sampling


def test_greedy_via_server_equals_local_generate(served):
    url, server = served
    gen = server.gen  # the same HFGenerator, called directly
    msgs = build_messages("alfworld", "Your task is to: put a mug in the sink.")
    chat_prompt = render(msgs, gen.tokenizer, chat=True).text
    local = gen.generate([chat_prompt], DecodingConfig(max_new_tokens=12), action_stop=False)[0]
    d = requests.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": msgs, "max_tokens": 12, "temperature": 0}).json()
    assert d["choices"][0]["message"]["content"] == local.text
    assert d["usage"]["completion_tokens"] == local.tokens

    plain = render(msgs, None, chat=False).text
    local = gen.generate([plain], DecodingConfig(max_new_tokens=12), action_stop=False)[0]
    d = requests.post(f"{url}/v1/completions", timeout=60, json={
        "model": "tiny", "prompt": plain, "max_tokens": 12, "temperature": 0}).json()
    assert d["choices"][0]["text"] == local.text

    # a stop string taken from the middle of the greedy text cuts it there (the stop itself excluded)
    words = local.text.split()
    if len(words) >= 3:
        stop = words[2]
        d = requests.post(f"{url}/v1/completions", timeout=60, json={
            "model": "tiny", "prompt": plain, "max_tokens": 12, "temperature": 0, "stop": stop}).json()
        assert d["choices"][0]["text"] == local.text[:local.text.find(stop)]
        assert d["choices"][0]["finish_reason"] == "stop"


def test_policy_on_real_server_returns_turns_in_order(served):
    url, _ = served
    policy = OpenAIPolicy("tiny", url + "/v1", decoding=DecodingConfig(max_new_tokens=6), concurrency=3)
    turns = policy.act(_states(3))
    assert len(turns) == 3 and policy.stop_at_action is True  # detected from /v1/models
    assert all(isinstance(t.raw, str) and t.tokens is not None and t.tokens <= 6 for t in turns)
    assert policy.name == "openai:tiny"


def test_api_key_is_sent_and_never_shown(served, monkeypatch):
    from sad_eval.agents.serve_model import ModelServer, create_app

    _, server = served
    locked = ModelServer(server.gen, "tiny", max_batch=2, api_key=FAKE_KEY)
    url, httpd = _start(create_app(locked))
    try:
        assert requests.get(f"{url}/v1/models", timeout=10).status_code == 401
        monkeypatch.setenv(KEY_VAR, FAKE_KEY)
        policy = OpenAIPolicy("tiny", url, api_key_env=KEY_VAR, decoding=DecodingConfig(max_new_tokens=3))
        assert len(policy.act(_states(2))) == 2  # the server checks `Authorization: Bearer <key>` exactly
        for text in (repr(policy), str(vars(policy)), str(policy.describe())):
            assert FAKE_KEY not in text

        monkeypatch.setenv(KEY_VAR, FAKE_KEY + "-wrong")
        bad = OpenAIPolicy("tiny", url, api_key_env=KEY_VAR, retries=1, backoff=0.01, stop_at_action=False)
        with pytest.raises(EndpointError) as ei:
            bad.act(_states(1))
        assert ei.value.status == 401 and "401" in str(ei.value)
        assert FAKE_KEY not in str(ei.value) and FAKE_KEY not in repr(ei.value)
        assert ei.value.__cause__ is None and (ei.value.__context__ is None or ei.value.__suppress_context__)
    finally:
        httpd.close()
        locked.close()


def test_cli_serve_model_subprocess(tiny_model):
    """`sad-eval serve model` for real: start, answer /v1/models and a chat request, stop."""
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "sad_eval.cli", "serve", "model", "--agent", str(tiny_model),
                             "--port", str(port), "--max-batch", "2", "--name", "tiny-cli"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                models = requests.get(f"{url}/v1/models", timeout=2).json()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.3)
        assert models["data"][0]["id"] == "tiny-cli"
        d = requests.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": "tiny-cli", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).json()
        assert d["choices"][0]["message"]["role"] == "assistant"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- request validation (fake generator)


class FakeGenerator:
    """Stands in for HFGenerator: records calls, answers a fixed text."""

    def __init__(self, path, max_context=2048):
        self.path = path
        self.max_context = max_context
        self.calls = []
        self.block = None  # an Event to hold the first call

    def generate(self, prompts, cfg, stop=(), action_stop=True, logprobs=False):
        self.calls.append((list(prompts), cfg, tuple(stop), action_stop))
        if self.block is not None:
            self.block.wait(10)
        return [Generation(f"out:{p[-6:]}", 2) for p in prompts]


@pytest.fixture(scope="module")
def fake_client(tiny_model):
    from sad_eval.agents.serve_model import ModelServer, create_app

    gen = FakeGenerator(tiny_model, max_context=512)
    server = ModelServer(gen, "tiny", max_batch=4)
    yield create_app(server).test_client(), gen
    server.close()


@pytest.mark.parametrize("body,status,needle", [
    ("{not json", 400, "not valid JSON"),
    ("[1, 2]", 400, "JSON object"),
    ('{"messages": [{"role": "user", "content": "x"}]}', 400, "'model' is required"),
    ('{"model": "tiny"}', 400, "'messages'"),
    ('{"model": "tiny", "messages": [{"content": "x"}]}', 400, "role"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": 3}]}', 400, "content"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400, "max_tokens"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 500}', 400, "context length"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": [1]}', 400, "stop"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": true}', 400, "stream"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop_at_action": "yes"}', 400, "stop_at"),
    ('{"model": "other", "messages": [{"role": "user", "content": "x"}]}', 404, "not served"),
])
def test_bad_requests_get_4xx_with_a_message(fake_client, body, status, needle):
    client, _ = fake_client
    r = client.post("/v1/chat/completions", data=body, content_type="application/json")
    assert r.status_code == status
    assert needle in r.get_json()["error"]["message"]


def test_bad_completions_request_and_unknown_route(fake_client):
    client, _ = fake_client
    r = client.post("/v1/completions", data=b"\xff\xfe", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["message"]
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": 7})
    assert r.status_code == 400 and "prompt" in r.get_json()["error"]["message"]
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.get_json()["error"]["message"]


def test_server_passes_decoding_fields(fake_client):
    client, gen = fake_client
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": "abc", "max_tokens": 7, "temperature": 0.5,
                                             "top_p": 0.8, "seed": 11, "stop": "\nObs", "stop_at_action": True})
    assert r.status_code == 200
    prompts, cfg, stop, action_stop = gen.calls[-1]
    assert prompts == ["abc"] and stop == ("\nObs",) and action_stop is True
    assert (cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed) == (7, 0.5, 0.8, 11)
    client.post("/v1/completions", json={"model": "tiny", "prompt": "abc", "temperature": 0})
    assert gen.calls[-1][3] is False  # standard clients: no action-line stop


def test_batcher_merges_queued_compatible_requests(tiny_model):
    from sad_eval.agents.serve_model import Batcher

    gen = FakeGenerator(tiny_model)
    gen.block = threading.Event()
    batcher = Batcher(gen, max_batch=4, wait_s=0.0)
    greedy, sampled = DecodingConfig(max_new_tokens=5), DecodingConfig(max_new_tokens=5, temperature=1.0)
    results = {}

    def go(name, cfg):
        results[name] = batcher.submit([f"prompt-{name}"], cfg)

    threads = [threading.Thread(target=go, args=("first", greedy))]
    threads[0].start()
    while not gen.calls:
        time.sleep(0.01)  # the worker is now inside the first (blocked) call
    for name, cfg in (("a", greedy), ("b", greedy), ("s", sampled), ("c", greedy)):
        threads.append(threading.Thread(target=go, args=(name, cfg)))
        threads[-1].start()
    while batcher._q.qsize() < 4:
        time.sleep(0.01)
    gen.block.set()
    for t in threads:
        t.join(10)
    batcher.close()
    sizes = sorted(len(c[0]) for c in gen.calls)
    assert sizes == [1, 1, 3]  # first alone, a+b+c merged, the sampled one alone
    assert sorted(results) == ["a", "b", "c", "first", "s"]
    assert all(v[0].text == "out:" + f"prompt-{k}"[-6:] for k, v in results.items())


# ---------------------------------------------------------------- the client against controlled endpoints


def _recording_app(log: list, fail_first: int = 0, fail_status: int = 503):
    """An endpoint that records requests and answers a turn naming the task, late for earlier rows."""
    from flask import Flask, request

    app = Flask("fake-endpoint")
    state = {"n": 0}

    @app.post("/v1/<path:kind>")
    def complete(kind):
        state["n"] += 1
        if state["n"] <= fail_first:
            return {"error": {"message": "busy"}}, fail_status
        body = request.get_json()
        log.append({"path": request.path, "auth": request.headers.get("Authorization"), "body": body})
        text = body["messages"][1]["content"] if "messages" in body else body["prompt"]
        digit = next(ch for ch in text if ch.isdigit())
        time.sleep(0.05 * (3 - int(digit)))  # row 0 answers last
        turn = f"Reasoning: find apple {digit}.\nAction: go to shelf {digit}\nObservation: made up\nAction: x\n"
        usage = {"prompt_tokens": 10, "completion_tokens": 17, "total_tokens": 27}
        if kind == "chat/completions":
            return {"choices": [{"index": 0, "message": {"role": "assistant", "content": turn}}], "usage": usage}
        return {"choices": [{"index": 0, "text": turn}], "usage": usage}

    return app


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_policy_order_cut_and_header(api, monkeypatch):
    log: list = []
    url, httpd = _start(_recording_app(log))
    monkeypatch.setenv(KEY_VAR, FAKE_KEY)
    try:
        policy = make_openai_policy("openai:fake-model", url + "/v1", api=api, api_key_env=KEY_VAR,
                                    decoding=DecodingConfig(max_new_tokens=40), concurrency=3)
        states = _states(3)
        turns = policy.act(states)
    finally:
        httpd.close()
    assert [t.action for t in turns] == ["go to shelf 0", "go to shelf 1", "go to shelf 2"]
    assert [t.reasoning for t in turns] == [f"find apple {i}." for i in range(3)]
    assert all(t.raw.endswith("go to shelf %d\n" % i) and not t.invalid and t.tokens == 17
               for i, t in enumerate(turns))
    assert len(log) == 3 and {r["auth"] for r in log} == {f"Bearer {FAKE_KEY}"}
    for r in log:
        body = r["body"]
        assert r["path"] == ("/v1/chat/completions" if api == "chat" else "/v1/completions")
        assert body["model"] == "fake-model" and body["stop"] == ["\nObservation:"] and body["max_tokens"] == 40
        assert body["temperature"] == 0.0 and "stop_at_action" not in body  # not a sad-eval server
    by_task = {r["body"].get("prompt") or r["body"]["messages"][1]["content"]: r["body"] for r in log}
    for s in states:
        msgs = build_messages(s.env, s.task, s.steps)
        if api == "chat":
            assert by_task[msgs[1]["content"]]["messages"] == msgs
        else:
            assert render(msgs, None, chat=False).text in by_task
    assert FAKE_KEY not in repr(policy) and FAKE_KEY not in str(policy.describe())


def test_retries_on_503_then_succeeds():
    log: list = []
    url, httpd = _start(_recording_app(log, fail_first=2))
    try:
        policy = OpenAIPolicy("m", url, retries=3, backoff=0.01, stop_at_action=False)
        (turn,) = policy.act(_states(1))
    finally:
        httpd.close()
    assert turn.action == "go to shelf 0" and len(log) == 1


def test_gives_up_after_retries_with_one_clear_error(monkeypatch):
    log: list = []
    url, httpd = _start(_recording_app(log, fail_first=100, fail_status=429))
    try:
        policy = OpenAIPolicy("m", url, retries=2, backoff=0.01, stop_at_action=False)
        with pytest.raises(EndpointError, match=r"after 3 attempts: HTTP 429: busy"):
            policy.act(_states(1))
    finally:
        httpd.close()

    monkeypatch.setenv(KEY_VAR, FAKE_KEY)
    down = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    policy = OpenAIPolicy("m", down, api_key_env=KEY_VAR, retries=2, backoff=0.01)
    t0 = time.monotonic()
    with pytest.raises(EndpointError) as ei:
        policy.act(_states(2))
    assert time.monotonic() - t0 < 10
    msg = str(ei.value)
    assert "unreachable after 3 attempts" in msg and down in msg and "cannot connect" in msg
    assert FAKE_KEY not in msg and FAKE_KEY not in repr(ei.value) and ei.value.__cause__ is None
    assert ei.value.__context__ is None or ei.value.__suppress_context__  # no chained request objects
    assert isinstance(ei.value, SadEvalError)


def test_spec_and_base_url(monkeypatch):
    assert normalize_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalize_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert normalize_base_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"
    with pytest.raises(SadEvalError):
        normalize_base_url("127.0.0.1:8000")
    with pytest.raises(SadEvalError, match="openai:MODEL"):
        make_openai_policy("openai:", "http://x")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(SadEvalError, match="base-url"):
        make_openai_policy("openai:m")
    p = make_openai_policy("openai:Qwen/Qwen2.5-7B-Instruct", "http://h:1", api="completions")
    assert p.name == "openai:Qwen/Qwen2.5-7B-Instruct" and p.model == "Qwen/Qwen2.5-7B-Instruct"
    assert p.describe()["api_key_env"] == "OPENAI_API_KEY"


def test_eval_takes_the_endpoint_from_openai_base_url(monkeypatch, tmp_path, data_root, capsys):
    """`--agent openai:MODEL` without --base-url uses $OPENAI_BASE_URL (as the OpenAI client does):
    the run reaches that endpoint and its manifest records it."""
    import json

    from flask import Flask, request

    from sad_eval.cli import main

    app, log = Flask("env-endpoint"), []

    @app.get("/v1/models")
    def models():
        return {"data": [{"id": "fake-model"}]}

    @app.post("/v1/chat/completions")
    def chat():
        log.append(request.get_json()["model"])
        return {"choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": "Thought: look it up.\nAction: Search[Paris]\n"}}]}

    url, httpd = _start(app)
    monkeypatch.setenv("OPENAI_BASE_URL", url + "/v1")
    out = tmp_path / "run.jsonl"
    try:
        rc = main(["eval", "--agent", "openai:fake-model", "--env", "hotpotqa", "-n", "1", "--max-steps", "2",
                   "--out", str(out), "--no-progress"])
    finally:
        httpd.close()
    assert rc == 0, capsys.readouterr().err
    assert log == ["fake-model", "fake-model"]  # one turn per step, to the variable's endpoint
    manifest = json.loads(out.with_name("run.manifest.json").read_text())
    assert manifest["agent_config"]["base_url"] == url + "/v1"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert main(["eval", "--agent", "openai:fake-model", "--env", "hotpotqa", "-n", "1", "--out", str(out)]) == 2
    assert "needs --base-url" in capsys.readouterr().err
