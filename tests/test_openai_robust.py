"""The OpenAI path holds up on a whole run: it fits the context (as the HF policy does), records a
refused episode as errored instead of aborting, never lets an empty output block a rerun, and checks
and records the model id the endpoint serves. Real servers on loopback: `sad-eval serve model` with
a tiny random-weight model, and small Flask apps that answer the way llama.cpp's server does."""

from __future__ import annotations

import json
import shutil

import pytest

from sad_eval.agents.base import EpisodeState
from sad_eval.agents.hf import DecodingConfig
from sad_eval.agents.openai_compat import EndpointError, OpenAIPolicy
from sad_eval.agents.prompts import ELIDED
from sad_eval.errors import SadEvalError
from sad_eval.trajectory import Step
from tests.test_openai_backend import _free_port, _start, tiny_model  # noqa: F401  (fixture)

LONG_OBS = "The page lists many things: " + ", ".join(f"item number {i} of the long list" for i in range(40)) + "."


def long_state(turns: int = 6, task: str = "Question: who wrote the book?") -> EpisodeState:
    steps = [Step(f"I search thing {i}.", f"search[thing {i}]", LONG_OBS) for i in range(turns)]
    return EpisodeState(env="hotpotqa", task_id="q", task=task, steps=steps)


@pytest.fixture(scope="module")
def small_student(tiny_model, tmp_path_factory):  # noqa: F811
    """The tiny model as a student distilled with a 512-token window (the project's own students)."""
    path = tmp_path_factory.mktemp("student") / "tiny-512"
    shutil.copytree(tiny_model, path)
    (path / "training_args.json").write_text(json.dumps({"seq_len": 512}))
    return path


@pytest.fixture(scope="module")
def served_student(small_student):
    from sad_eval.agents.serve_model import build

    app, server = build(str(small_student), max_batch=2)
    url, httpd = _start(app)
    yield url + "/v1", server
    httpd.close()
    server.close()


def test_a_512_token_student_is_evaluated_over_its_server(served_student):
    url, server = served_student
    state = long_state()
    # the old client sent the whole conversation: the server refuses it
    raw = OpenAIPolicy(server.model_id, url, decoding=DecodingConfig(max_new_tokens=128), max_context=100_000)
    with pytest.raises(EndpointError, match="maximum context length is 512"):
        raw._request("POST", "/chat/completions", raw.payload(state))
    # now: the server's context (max_model_len) and its tokenizer (root) are used to fit it
    policy = OpenAIPolicy(server.model_id, url, decoding=DecodingConfig(max_new_tokens=128))
    (turn,) = policy.act([state])
    assert turn.error is None, turn.error
    msgs = policy.messages(state)
    # the context policy elided old observations or dropped old turns, never the latest observation
    assert any(m["content"] == ELIDED for m in msgs) or "earlier turns omitted" in msgs[1]["content"]
    assert state.steps[-1].observation.strip()[:30] in msgs[-1]["content"]
    assert server.count(server.render_chat(msgs)) + 128 <= 512
    extra = policy.manifest_extra()
    assert extra["served_model"] == server.model_id and extra["max_context"] == 512
    assert extra["max_context_from"] == "server" and extra["tokens_counted_with"] == str(server.gen.path)


def llama_like_app(log: list, n_ctx: int, tokenizer, refuse: str = "", models=("smollm2.gguf",)):
    """Answers as llama.cpp's server: one model (any name accepted), context at /props, and a 400
    with its wording when prompt + max_tokens exceed the context (counted with the real tokenizer)."""
    from flask import Flask, request

    app = Flask("llama-like")

    @app.get("/v1/models")
    def models_():
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "llamacpp",
                                            "meta": {"n_ctx_train": 8192}} for m in models]}

    @app.get("/props")
    def props():
        return {"default_generation_settings": {"n_ctx": n_ctx}, "total_slots": 1}

    @app.post("/v1/chat/completions")
    def chat():
        body = request.get_json()
        log.append(body)
        text = "".join(m["content"] + "\n" for m in body["messages"])
        if refuse and refuse in text:
            return {"error": {"code": 400, "message": "invalid 'messages': unsupported content", "type": "invalid_request_error"}}, 400
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 5 * len(body["messages"])
        if n + body["max_tokens"] > n_ctx:
            return {"error": {"code": 400, "type": "exceed_context_size_error",
                              "message": f"the request exceeds the available context size ({n} tokens), try increasing it"}}, 400
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Reasoning: I know it.\nAnswer: yes\n"}}],
                "usage": {"completion_tokens": 9}}

    return app


def test_unknown_tokenizer_estimates_and_a_refusal_elides_more(smol_tokenizer):
    log: list = []
    url, httpd = _start(llama_like_app(log, 600, smol_tokenizer))
    try:
        policy = OpenAIPolicy("gpt-4o", url, decoding=DecodingConfig(max_new_tokens=128))
        (turn,) = policy.act([long_state(8)])
        assert turn.error is None and turn.action == "finish[yes]"
        # the id the endpoint really serves is recorded; the context came from /props
        extra = policy.manifest_extra()
        assert extra["served_model"] == "smollm2.gguf" and extra["max_context"] == 600
        assert extra["tokens_counted_with"] == "estimate"
        # with a context claimed larger than the server's, the server's refusal makes it elide more
        log.clear()
        optimistic = OpenAIPolicy("gpt-4o", url, decoding=DecodingConfig(max_new_tokens=128), max_context=4096)
        (turn,) = optimistic.act([long_state(8)])
        assert turn.error is None and len(log) > 1
        assert len(str(log[-1]["messages"])) < len(str(log[0]["messages"]))  # fitted tighter after each refusal
    finally:
        httpd.close()


def test_model_id_must_be_served(smol_tokenizer):
    url, httpd = _start(llama_like_app([], 600, smol_tokenizer, models=("a", "b")))
    try:
        with pytest.raises(SadEvalError, match="does not serve model 'c'; it serves 'a', 'b'"):
            OpenAIPolicy("c", url).act([long_state(0)])
        assert OpenAIPolicy("b", url).manifest_extra()["served_model"] == "b"
    finally:
        httpd.close()


def test_a_refused_episode_is_errored_and_the_run_goes_on(data_root, smol_tokenizer, tmp_path):
    import sad_eval
    from sad_eval.envs.hotpotqa import HotPotQAEnv

    env = HotPotQAEnv(split="dev500", data_root=data_root)
    try:
        _, info = env.reset(options={"task_id": env.task_ids[1]})
        poison = info.get("question") or env.reset(options={"task_id": env.task_ids[1]})[0]
    finally:
        env.close()
    poison = poison.strip().splitlines()[-1][-30:]
    log: list = []
    url, httpd = _start(llama_like_app(log, 2048, smol_tokenizer, refuse=poison))
    out = tmp_path / "run.jsonl"
    try:
        # first the endpoint is down: the run fails with nothing recorded ...
        down = f"http://127.0.0.1:{_free_port()}/v1"
        with pytest.raises(EndpointError, match="unreachable"):
            sad_eval.evaluate("openai:gpt-4o", "hotpotqa", n=3, out=out, base_url=down, max_new_tokens=32,
                              subset="first")
        # ... and the retry with other decoding is not refused: the file holds no episodes
        res = sad_eval.evaluate("openai:gpt-4o", "hotpotqa", n=3, out=out, base_url=url, max_new_tokens=64,
                                subset="first")
    finally:
        httpd.close()
    assert len(res.episodes) == 3
    errored = [e for e in res.episodes if e.status == "error"]
    assert len(errored) == 1 and "HTTP 400" in errored[0].error and errored[0].task_id == res.episodes[1].task_id
    assert res.metrics["errored"] == 1 and res.metrics["episodes"] == 2
    manifest = json.loads(out.with_name("run.manifest.json").read_text())
    assert manifest["agent"] == "openai:gpt-4o" and manifest["agent_config"]["served_model"] == "smollm2.gguf"
    assert all(s.raw.startswith("Reasoning:") for e in res.episodes if e.status == "ok" for s in e.steps)
