"""`sad-eval serve model`: a local checkpoint behind a small OpenAI-compatible HTTP API.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (messages through the tokenizer's chat
template, with the generation prompt), ``POST /v1/completions`` (a prompt string or a list of
them), ``GET /health``. Honoured fields: ``max_tokens`` (default 256), ``temperature``, ``top_p``,
``stop``, ``seed``, ``n`` (OpenAI defaults: temperature 1, top_p 1), log-probs (chat ``logprobs`` +
``top_logprobs`` ≤ 20, completions ``logprobs`` ≤ 20; from the generation's own raw logits, i.e.
temperature 1 whatever the sampling temperature); ``stream``, ``echo``, ``tools``/``functions`` and the other
fields this server cannot honour are refused with a 400 rather than silently ignored. Non-standard: ``"stop_at_action": true`` ends
each completion after its first complete ``Action:``/``Answer:`` line (what sad-eval's client
asks for); standard clients get standard behaviour.

One worker thread owns the model. Requests queue up and the worker micro-batches greedy
requests with identical decoding settings into one `HFGenerator.generate` call (up to
``max_batch`` sequences); a sampled request runs alone, so its ``seed`` reproduces it.
Malformed requests get a 4xx with an OpenAI-style error body, never a 500: a body over
``MAX_BODY_BYTES`` or a prompt over the character bound (``CHARS_PER_TOKEN`` × the context) is a
413 before any tokenisation; a lone surrogate, JSON nested too deep, an empty prompt are 400s.
Request threads tokenise with a tokenizer of their own (no lock shared across requests), so one
long prompt never stalls the others.
"""

from __future__ import annotations

import hmac
import os
import queue
import random
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from sad_eval.agents.hf import DecodingConfig, Generation
from sad_eval.errors import SadEvalError

DEFAULT_MAX_TOKENS = 256
MAX_STOP = 16
MAX_BODY_BYTES = 8 * 1024 * 1024
# a prompt longer than this many characters per context token cannot fit (SmolLM2's tokenizer
# averages ~4 characters per token on English; 32 leaves room for odd text) and is refused before
# it is tokenised: a 7.9 MB prompt used to take the tokenizer 29 s and ~390 MB per thread
CHARS_PER_TOKEN = 32
MAX_JSON_DEPTH = 64
# request fields this server does not implement: refused when set to anything but their default
UNSUPPORTED = {"echo": (None, False),
               "tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []),
               "function_call": (None, "none"), "best_of": (None, 1), "suffix": (None, ""),
               "logit_bias": (None, {}), "response_format": (None, {"type": "text"}),
               "presence_penalty": (None, 0), "frequency_penalty": (None, 0)}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


# ---------------------------------------------------------------- micro-batching


@dataclass
class _Job:
    prompts: list[str]
    cfg: DecodingConfig
    stop: tuple[str, ...]
    action_stop: bool
    top_logprobs: int = 0  # > 0: Generation.top_logprobs with that many entries per token
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple:
        if self.cfg.temperature > 0:
            return ("sampled", id(self))  # never batched: its seed must reproduce it
        return (self.cfg.max_new_tokens, self.stop, self.action_stop, self.top_logprobs)


class Batcher:
    """A queue in front of one generator; a worker thread merges compatible queued jobs into one call."""

    def __init__(self, generator, max_batch: int = 8, wait_s: float = 0.01, prefix_cache: bool = True):
        self.gen = generator
        # a client that resends a conversation with one more turn reuses the cached prefix
        self.prefix_cache = prefix_cache and hasattr(generator, "generate_reusing")
        if self.prefix_cache:
            generator.kv.capacity = 4 * max(1, int(max_batch))
        self.max_batch = max(1, int(max_batch))
        self.wait_s = wait_s
        self._q: queue.Queue[_Job | None] = queue.Queue()
        self._held: list[_Job] = []  # taken from the queue but incompatible with the last batch
        self.calls = 0  # generate calls made (for tests / stats)
        self._thread = threading.Thread(target=self._loop, name="sad-eval-generate", daemon=True)
        self._thread.start()

    def submit(self, prompts: Sequence[str], cfg: DecodingConfig, stop: Sequence[str] = (),
               action_stop: bool = False, top_logprobs: int = 0) -> list[Generation]:
        job = _Job(list(prompts), cfg, tuple(stop), action_stop, top_logprobs)
        self._q.put(job)
        return job.future.result()

    def close(self) -> None:
        self._q.put(None)

    def _next(self, timeout: float | None) -> _Job | None:
        if self._held:
            return self._held.pop(0)
        return self._q.get(timeout=timeout) if timeout is None or timeout > 0 else self._q.get_nowait()

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            batch, n = [first], len(first.prompts)
            deadline = time.monotonic() + self.wait_s
            held = []
            while n < self.max_batch and first.key[0] != "sampled":
                try:
                    job = self._next(max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._q.put(None)  # close after this batch
                    break
                if job.key == first.key and n + len(job.prompts) <= self.max_batch:
                    batch.append(job)
                    n += len(job.prompts)
                else:
                    held.append(job)
            self._held = held + self._held
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        prompts = [p for job in batch for p in job.prompts]
        head = batch[0]
        try:
            gens: list[Generation] = []
            for i in range(0, len(prompts), self.max_batch):  # one oversized job runs in slices
                self.calls += 1
                part = prompts[i:i + self.max_batch]
                extra = {"top_logprobs": head.top_logprobs} if head.top_logprobs else {}
                if self.prefix_cache:
                    gens += self.gen.generate_reusing(part, [None] * len(part), head.cfg, stop=head.stop,
                                                      action_stop=head.action_stop, **extra)
                else:
                    gens += self.gen.generate(part, head.cfg, stop=head.stop, action_stop=head.action_stop, **extra)
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            for job in batch:
                job.future.set_exception(e)
            return
        pos = 0
        for job in batch:
            job.future.set_result(gens[pos:pos + len(job.prompts)])
            pos += len(job.prompts)


# ---------------------------------------------------------------- request validation


def _number(body: dict, name: str, default: float, lo: float, hi: float, integer: bool = False):
    v = body.get(name)
    if v is None:
        return default
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok or isinstance(v, bool):
        raise BadRequest(f"'{name}' must be {'an integer' if integer else 'a number'}", name)
    if not lo <= v <= hi:
        raise BadRequest(f"'{name}' must be between {lo:g} and {hi:g}", name)
    return v


def _utf8(text: str, param: str) -> str:
    """JSON can carry a lone surrogate (``"\\ud800"``), which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(f"'{param}' contains a lone surrogate (U+{ord(text[e.start]):04X}); send valid UTF-16 pairs",
                         param) from None
    return text


def _unsupported(body: dict) -> None:
    for name, defaults in UNSUPPORTED.items():
        if name in body and body[name] not in defaults:
            raise BadRequest(f"'{name}' is not supported by this server", name)


def _depth_ok(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests at most ``limit`` deep (brackets inside strings do not count)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:  # C-speed: most bodies end here
        return True
    depth, in_str, esc = 0, False, False
    for c in raw:
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:  # backslash
                esc = True
            elif c == 0x22:
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif c in (0x5D, 0x7D):
            depth -= 1
    return True


def _stops(body: dict) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise BadRequest("'stop' must be a string or a list of strings", "stop")
    if len(v) > MAX_STOP:
        raise BadRequest(f"at most {MAX_STOP} stop strings", "stop")
    return tuple(_utf8(s, "stop") for s in v if s)


MAX_TOP_LOGPROBS = 20  # OpenAI's chat limit (its completions allow 5; vLLM and llama.cpp more)


def _logprobs_request(body: dict, api: str) -> int | None:
    """None: no log-probs; N >= 0: the chosen token's log-prob and the N most likely alternatives.
    Chat: ``logprobs: true`` + ``top_logprobs: N``; completions: ``logprobs: N``."""
    if api == "chat":
        want = body.get("logprobs", False)
        if want is not None and not isinstance(want, bool):
            raise BadRequest("'logprobs' must be true or false", "logprobs")
        n = _number(body, "top_logprobs", None, 0, MAX_TOP_LOGPROBS, integer=True)
        if n is not None and not want:
            raise BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs")
        return (n or 0) if want else None
    return _number(body, "logprobs", None, 0, MAX_TOP_LOGPROBS, integer=True)


def _text_content(content: Any, i: int) -> str:
    """A message's content: a string, or a list of text parts (other part types are refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise BadRequest(f"messages[{i}].content: only text parts are supported", "messages")
            out.append(part["text"])
        return "".join(out)
    raise BadRequest(f"messages[{i}].content must be a string", "messages")


def _messages(body: dict) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a string 'role'", "messages")
        if m["role"] not in ("system", "user", "assistant", "developer"):
            raise BadRequest(f"messages[{i}].role {m['role']!r} is not supported", "messages")
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": _utf8(_text_content(m.get("content"), i), "messages")})
    return out


def _prompts(body: dict) -> list[str]:
    p = body.get("prompt")
    if isinstance(p, str):
        p = [p]
    if not (isinstance(p, list) and p and all(isinstance(x, str) for x in p)):
        raise BadRequest("'prompt' must be a string or a non-empty list of strings", "prompt")
    if not all(p):
        raise BadRequest("'prompt' must not be empty (this server does not generate from nothing)", "prompt")
    return [_utf8(x, "prompt") for x in p]


# ---------------------------------------------------------------- the app


class ModelServer:
    """Request handling over a generator; `create_app` wraps it in Flask."""

    def __init__(self, generator, model_id: str, max_batch: int = 8, api_key: str | None = None,
                 wait_s: float = 0.01):
        from transformers import AutoTokenizer

        self.gen = generator
        self.model_id = model_id
        self.max_batch = max(1, int(max_batch))
        self.batcher = Batcher(generator, self.max_batch, wait_s)
        self._api_key = api_key or None
        # request threads render and count with tokenizers of their own: a fast tokenizer is not
        # thread-safe, and one lock around it let one long prompt stall every other request
        self._tok_path = generator.path
        self._tok_local = threading.local()
        self.tokenizer = AutoTokenizer.from_pretrained(generator.path)  # this thread's (and a check it loads)
        self._tok_local.tokenizer = self.tokenizer
        self.max_prompt_chars = CHARS_PER_TOKEN * int(generator.max_context)
        self.created = int(time.time())

    def _tok(self):
        tok = getattr(self._tok_local, "tokenizer", None)
        if tok is None:
            from transformers import AutoTokenizer

            tok = self._tok_local.tokenizer = AutoTokenizer.from_pretrained(self._tok_path)
        return tok

    def check_length(self, texts: Sequence[str], param: str) -> None:
        """Refuse (413) text that cannot fit the context, before tokenising it."""
        n = sum(len(t) for t in texts)
        if n > self.max_prompt_chars:
            raise BadRequest(f"the {param} has {n} characters; this server takes at most {self.max_prompt_chars} "
                             f"({CHARS_PER_TOKEN} per token of its {self.gen.max_context}-token context)", param,
                             status=413, code="context_length_exceeded")

    # -- helpers

    def authorized(self, header: str | None) -> bool:
        if not self._api_key:
            return True
        expected = f"Bearer {self._api_key}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        from sad_eval.agents.prompts import render

        self.check_length([m["content"] for m in messages], "messages")
        try:
            return render(messages, self._tok(), chat=True, add_generation_prompt=True).text
        except Exception as e:  # a template that rejects the conversation (role order, ...)
            raise BadRequest(f"cannot apply the chat template: {e}", "messages") from None

    def count(self, text: str) -> int:
        return len(self._tok()(text, add_special_tokens=False)["input_ids"])

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": self.created,
                                            "owned_by": "sad-eval", "max_model_len": self.gen.max_context,
                                            "root": str(self.gen.path)}]}  # as vLLM: where the weights are

    def _decode_args(self, body: dict, n_prompts: int):
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("'model' is required", "model")
        if model != self.model_id:
            raise BadRequest(f"model {model!r} is not served here; this server has {self.model_id!r}", "model",
                             status=404, code="model_not_found")
        if body.get("stream"):
            raise BadRequest("streaming is not supported", "stream")
        _unsupported(body)
        max_tokens = _number(body, "max_tokens", None, 1, self.gen.max_context, integer=True)
        if max_tokens is None:  # newer chat clients send max_completion_tokens
            max_tokens = _number(body, "max_completion_tokens", DEFAULT_MAX_TOKENS, 1, self.gen.max_context,
                                 integer=True)
        temperature = _number(body, "temperature", 1.0, 0.0, 2.0)  # OpenAI's default; sad-eval sends 0
        top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
        if top_p <= 0:
            raise BadRequest("'top_p' must be greater than 0", "top_p")
        seed = _number(body, "seed", None, -2 ** 63, 2 ** 63 - 1, integer=True)
        if seed is None:
            seed = random.randrange(2 ** 31)
        n = _number(body, "n", 1, 1, self.max_batch, integer=True)
        stop_at_action = body.get("stop_at_action", False)
        if not isinstance(stop_at_action, bool):
            raise BadRequest("'stop_at_action' must be true or false", "stop_at_action")
        if n_prompts * n > 64:
            raise BadRequest("at most 64 completions per request", "n")
        cfg = DecodingConfig(max_new_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
                             seed=int(seed) % 2 ** 32)
        return cfg, _stops(body), stop_at_action, int(n)

    def _generate(self, prompts: list[str], body: dict, top: int | None = None):
        cfg, stop, action_stop, n = self._decode_args(body, len(prompts))
        counts = [self.count(p) for p in prompts]
        worst = max(counts)
        if worst + cfg.max_new_tokens > self.gen.max_context:
            raise BadRequest(f"this model's maximum context length is {self.gen.max_context} tokens; the request "
                             f"has {worst} prompt tokens + max_tokens {cfg.max_new_tokens}", "max_tokens",
                             code="context_length_exceeded")
        expanded = [p for p in prompts for _ in range(n)]
        # log-probs come from the generation's own scores (raw, temperature 1): no second pass
        gens = self.batcher.submit(expanded, cfg, stop, action_stop, top_logprobs=0 if top is None else max(1, top))
        usage = {"prompt_tokens": sum(counts) * n, "completion_tokens": sum(g.tokens for g in gens)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        reasons = ["length" if g.tokens >= cfg.max_new_tokens else "stop" for g in gens]
        return gens, reasons, usage

    def _chat_logprobs(self, g: Generation, top: int) -> dict:
        from sad_eval.agents.token_bytes import token_entry

        tok = self._tok()  # this request thread's own tokenizer
        return {"content": [{**token_entry(tok, t, lp), "top_logprobs": [token_entry(tok, i, v) for i, v in alts[:top]]}
                            for t, lp, alts in zip(g.token_ids, g.logprobs, g.top_logprobs)]}

    def _completion_logprobs(self, g: Generation, top: int) -> dict:
        from sad_eval.agents.token_bytes import token_entry

        tok = self._tok()
        entries = [token_entry(tok, t, lp) for t, lp in zip(g.token_ids, g.logprobs)]
        alts = [{e["token"]: e["logprob"] for e in (token_entry(tok, i, v) for i, v in a[:top])}
                for a in g.top_logprobs] if top else None
        offsets, pos = [], 0
        for e in entries:
            offsets.append(pos)
            pos += len(e["token"])
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": alts, "text_offset": offsets}

    def chat(self, body: dict) -> dict:
        messages = _messages(body)
        top = _logprobs_request(body, "chat")
        prompt = self.render_chat(messages)
        gens, reasons, usage = self._generate([prompt], body, top)
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text},
                    "logprobs": None if top is None else self._chat_logprobs(g, top),
                    "finish_reason": r} for i, (g, r) in enumerate(zip(gens, reasons))]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_id, "choices": choices, "usage": usage}

    def completions(self, body: dict) -> dict:
        prompts = _prompts(body)
        self.check_length(prompts, "prompt")
        top = _logprobs_request(body, "completions")
        gens, reasons, usage = self._generate(prompts, body, top)
        choices = [{"index": i, "text": g.text,
                    "logprobs": None if top is None else self._completion_logprobs(g, top), "finish_reason": r}
                   for i, (g, r) in enumerate(zip(gens, reasons))]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_id, "choices": choices, "usage": usage}

    def close(self) -> None:
        self.batcher.close()


def _error(message: str, status: int, param: str | None = None, code: str | None = None, kind: str | None = None):
    from flask import jsonify

    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    resp = jsonify({"error": {"message": message, "type": kind, "param": param, "code": code}})
    resp.status_code = status
    return resp


def create_app(server: ModelServer):
    """The Flask app for a `ModelServer` (JSON errors everywhere, 8 MiB request limit)."""
    from flask import Flask, request
    from werkzeug.exceptions import HTTPException

    app = Flask("sad_eval.serve_model")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    app.extensions["sad_eval_server"] = server

    def body_json() -> dict:
        raw = request.get_data(cache=True)
        if not _depth_ok(raw):
            raise BadRequest(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = request.get_json(force=True, silent=True)
        except RecursionError:
            data = None
        if data is None:
            raise BadRequest("the request body is not valid JSON")
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return data

    @app.before_request
    def check_key():
        if request.path.startswith("/v1/") and not server.authorized(request.headers.get("Authorization")):
            return _error("missing or wrong API key (send Authorization: Bearer KEY)", 401,
                          code="invalid_api_key", kind="authentication_error")
        return None

    @app.get("/health")
    def health():
        return {"status": "ok", "model": server.model_id}

    @app.get("/v1/models")
    def models():
        return server.models()

    @app.post("/v1/chat/completions")
    def chat():
        return server.chat(body_json())

    @app.post("/v1/completions")
    def completions():
        return server.completions(body_json())

    @app.errorhandler(BadRequest)
    def bad_request(e: BadRequest):
        return _error(e.message, e.status, e.param, e.code)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return _error(e.description or e.name, e.code or 500)

    @app.errorhandler(Exception)
    def server_error(e: Exception):
        app.logger.exception("request failed")
        return _error(f"generation failed: {type(e).__name__}: {e}", 500)

    return app


def build(agent: str, name: str | None = None, max_batch: int = 8, api_key_env: str | None = None,
          dtype: str = "float32", threads: int | None = None):
    """Load the checkpoint and return ``(app, server)``."""
    from pathlib import Path

    from sad_eval.agents.hf import HFGenerator

    gen = HFGenerator(agent, dtype=dtype, threads=threads)
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise SadEvalError(f"--api-key-env {api_key_env}: the variable is not set")
    server = ModelServer(gen, name or Path(gen.path).name, max_batch=max_batch, api_key=api_key)
    return create_app(server), server


def serve(agent: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 8, name: str | None = None,
          api_key_env: str | None = None, dtype: str = "float32", threads: int | None = None, log=print) -> None:
    """Run the server until interrupted (waitress; loopback unless told otherwise)."""
    from waitress import create_server

    app, server = build(agent, name, max_batch, api_key_env, dtype, threads)
    if host not in LOOPBACK and not api_key_env:
        log(f"warning: serving on {host} without --api-key-env: anyone who can reach this port can use the model")
    try:
        httpd = create_server(app, host=host, port=port, threads=max(4, 2 * server.max_batch),
                              max_request_body_size=MAX_BODY_BYTES)
    except OSError as e:
        raise SadEvalError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    log(f"serving {server.model_id} at http://{host}:{httpd.effective_port}/v1 (max batch {server.max_batch})")
    try:
        httpd.run()
    finally:
        httpd.close()
        server.close()


def register(serve_app) -> None:
    """Add `serve model` to the `sad-eval serve` group."""
    import typer

    @serve_app.command("model")
    def serve_model_cmd(
        agent: str = typer.Option(..., "--agent", help="Checkpoint directory (or smollm2-135m)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
        port: int = typer.Option(8000, "--port", help="TCP port (0: any free port)."),
        max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most sequences merged into one generate call."),
        name: Optional[str] = typer.Option(None, "--name", help="Model id clients send (default: the folder name)."),
        api_key_env: Optional[str] = typer.Option(None, "--api-key-env",
                                                  help="Require `Authorization: Bearer $VAR` (the variable's name)."),
        dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16."),
        threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    ):
        """Serve a checkpoint over an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions)."""
        serve(agent, host=host, port=port, max_batch=max_batch, name=name, api_key_env=api_key_env, dtype=dtype,
              threads=threads, log=lambda m: print(m, flush=True))
