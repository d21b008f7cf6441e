"""OpenAI-compatible HTTP endpoints (vLLM, llama.cpp server, `sad-eval serve model`, hosted APIs) as policies.

Each state's conversation is built with the same prompt builder a local model uses
(`build_messages`), then sent either as chat messages (``api="chat"``, POST
``/v1/chat/completions``; the server applies its chat template) or as the plain-text rendering
(``api="completions"``, POST ``/v1/completions``). The batch fans out over a thread pool;
turns come back in input order.

Stopping: "end of the action line" is not expressible as an OpenAI stop string, so the request
carries ``stop=["\\nObservation:"]`` and the reply is cut client-side right after the first
complete ``Action:``/``Answer:`` line, with the rule local generation uses. A server that
understands the non-standard ``"stop_at_action": true`` field (`sad-eval serve model`) stops
there itself; it is sent when asked, or detected from ``/v1/models`` (``owned_by: sad-eval``).

Context: the conversation is fitted to the endpoint's context the way the local HF policy fits it
(`build_context`: the oldest observations are elided first), with ``max_context`` from the caller
(``--max-context``) or from the server (``max_model_len`` in ``/v1/models`` as vLLM and `sad-eval
serve model` give it, llama.cpp's ``/props`` ``n_ctx``). Tokens are counted with the model's tokenizer
when it is known (``tokenizer=``, or the served checkpoint's ``root`` folder when it is on this
machine), else estimated on the safe side (`EstimatedTokens`). A request the server still refuses
as too long is retried with one more observation elided.

Errors: a request the server refuses for this conversation (a 4xx other than auth / unknown model,
or an answer without choices) ends that episode as errored (`Turn.error`) and the run goes on; an
unreachable endpoint, a refused key or an unknown model stops the run. ``/v1/models`` is checked
once: the model id must be one the endpoint serves (a single-model server such as llama.cpp answers
to any name; then the id it really serves is recorded in the manifest as ``served_model``).

The API key is read from the environment variable named by ``api_key_env`` and sent as
``Authorization: Bearer``; it is never stored in a plain attribute, printed, or put in an error.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence
from urllib.parse import urlsplit

from sad_eval.agents.base import EpisodeState, Turn
from sad_eval.agents.hf import DecodingConfig
from sad_eval.agents.prompts import ELIDED, build_context, build_messages, render
from sad_eval.agents.stops import OBS_STOP, stop_index
from sad_eval.errors import SadEvalError
from sad_eval.segment import parse_turn

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
SPEC_PREFIX = "openai:"


class EndpointError(SadEvalError):
    """The endpoint could not be reached or refused the request (after retries).

    ``status`` is the HTTP status of a refusal, or None when no usable answer came back.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# HTTP statuses that say the whole run is misconfigured (not this conversation's fault)
RUN_FATAL_STATUS = frozenset({401, 403, 404})
# how vLLM, llama.cpp, OpenAI and `sad-eval serve model` word a prompt that does not fit
_OVERFLOW_WORDS = ("context length", "context_length", "maximum context", "context size", "context window",
                   "too long", "n_ctx", "prompt is too")


def _is_overflow(err: "EndpointError") -> bool:
    text = str(err).lower()
    return err.status in (400, 413, 422) and any(w in text for w in _OVERFLOW_WORDS)


class EstimatedTokens:
    """A stand-in tokenizer for counting only, when the endpoint's tokenizer is unknown: about one
    token per 3 characters plus a few per line (chat-template tokens around each message), above
    what BPE tokenizers give for English ReAct text (SmolLM2: ~4.2 characters per token)."""

    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> dict:
        n = -(-len(text) // 3) + 4 * text.count("\n")
        out: dict = {"input_ids": [0] * n}
        if return_offsets_mapping:  # (the context policy shortens a page at token boundaries)
            out["offset_mapping"] = [(min(3 * i, len(text)), min(3 * i + 3, len(text))) for i in range(n)]
        return out


class _Secret:
    """Holds the API key; prints as ``***`` so it cannot leak through repr/vars/logging."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def normalize_base_url(base_url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``; a URL with a path is kept (minus trailing ``/``)."""
    url = (base_url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SadEvalError(f"bad --base-url {base_url!r}: expected http(s)://HOST[:PORT][/v1]")
    if parts.path in ("", "/"):
        url += "/v1"
    return url


class OpenAIPolicy:
    """A model behind an OpenAI-compatible endpoint as a batched ReAct policy."""

    def __init__(self, model: str, base_url: str, api: str = "chat", decoding: DecodingConfig | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60, retries: int = 4,
                 concurrency: int = 8, exemplars: Sequence[str] = (), backoff: float = 1.0,
                 max_backoff: float = 30.0, stop_at_action: bool | None = None, name: str | None = None,
                 top_logprobs: int = 0, max_context: int | None = None, tokenizer: Any = None, chat: bool = True):
        import requests

        if api not in ("chat", "completions"):
            raise SadEvalError(f"unknown endpoint api {api!r}: choose chat or completions")
        if not model:
            raise SadEvalError("an OpenAI-compatible agent needs a model name: openai:MODEL")
        self.model = model
        self.base_url = normalize_base_url(base_url)
        self.api = api
        self.decoding = decoding or DecodingConfig()
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.concurrency = max(1, int(concurrency))
        # a fixed list, or an agents.exemplars.Exemplars (chosen per task: ALFWorld's per type)
        self.exemplars = exemplars if hasattr(exemplars, "for_task") else tuple(exemplars)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stop_at_action = stop_at_action  # None: ask the server (/v1/models) once
        self.name = name or f"{SPEC_PREFIX}{model}"
        # > 0: ask for the top-N log-probs of every generated token and map them to the ids of
        # ``tokenizer`` (the student's: a name, a path or a tokenizer; default SmolLM2's)
        self.top_logprobs = max(0, int(top_logprobs))
        self._tokenizer = tokenizer
        self._key = _Secret(os.environ.get(api_key_env, "") if api_key_env else "")
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=self.concurrency)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._probe_lock = threading.Lock()
        self.chat = chat  # count with the tokenizer's chat template (api="chat"; the server applies it)
        self.max_context = int(max_context) if max_context else None
        self.context_source = "--max-context" if max_context else None
        self.tokenizer = _load_tokenizer(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
        self.tokenizer_source = str(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else (
            type(tokenizer).__name__ if tokenizer is not None else None)
        self.served_model: str | None = None
        self._probed = False

    def __repr__(self) -> str:
        return f"OpenAIPolicy(model={self.model!r}, base_url={self.base_url!r}, api={self.api!r})"

    def describe(self) -> dict[str, Any]:
        """What a run manifest may record (the key's variable name, never its value)."""
        return {"agent": self.name, "backend": "openai", "model": self.model, "base_url": self.base_url,
                "api": self.api, "decoding": self.decoding.as_dict(), "api_key_env": self.api_key_env,
                "stop_at_action": self.stop_at_action, **self.manifest_extra()}

    def manifest_extra(self) -> dict[str, Any]:
        """What the run manifest records beyond the spec: the id the endpoint serves, the context fitted to."""
        self.probe()
        return {"served_model": self.served_model, "max_context": self.max_context,
                "max_context_from": self.context_source,
                "tokens_counted_with": self.tokenizer_source or ("estimate" if self.max_context else None)}

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self._key:
            h["Authorization"] = f"Bearer {self._key.reveal()}"
        return h

    def _scrub(self, text: str) -> str:
        key = self._key.reveal()
        return text.replace(key, "***") if key else text

    def _fail(self, msg: str, status: int | None = None) -> EndpointError:
        return EndpointError(self._scrub(msg), status)

    def _request(self, method: str, path: str, payload: dict | None = None, retries: int | None = None) -> dict:
        """One JSON call with retries (exponential backoff) on connection errors, timeouts, 429 and 5xx."""
        import requests

        url = self.base_url + path
        retries = self.retries if retries is None else retries
        last, last_retry_after = "", None
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, last_retry_after))
            last_retry_after = None
            try:
                r = self._session.request(method, url, json=payload, headers=self._headers(), timeout=self.timeout)
            except requests.Timeout:
                last = f"no answer within {self.timeout:g}s"
                continue
            except requests.ConnectionError as e:
                last = f"cannot connect ({type(e).__name__})"
                continue
            except requests.RequestException as e:
                raise self._fail(f"endpoint {url}: request failed: {type(e).__name__}: {e}") from None
            if r.status_code in RETRY_STATUS:
                last = f"HTTP {r.status_code}{_error_detail(r)}"
                last_retry_after = r.headers.get("Retry-After")
                continue
            if r.status_code >= 400:
                hint = " (check the key in $" + self.api_key_env + ")" if r.status_code in (401, 403) else ""
                raise self._fail(f"endpoint {url} refused the request: HTTP {r.status_code}{_error_detail(r)}{hint}",
                                 r.status_code)
            try:
                data = r.json()
            except ValueError:
                raise self._fail(f"endpoint {url} answered HTTP {r.status_code} with a non-JSON body") from None
            if not isinstance(data, dict):
                raise self._fail(f"endpoint {url} answered with unexpected JSON ({type(data).__name__})")
            return data
        tries = retries + 1
        raise self._fail(f"endpoint {url} unreachable after {tries} attempt{'s' * (tries > 1)}: {last}")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        base = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return base * (0.75 + 0.5 * random.random())  # jitter: concurrent rows do not retry in lockstep

    def probe(self) -> None:
        """Ask ``/v1/models`` once: is the model served (and under which id), its context length, its
        tokenizer (a local ``root``), whether it is `sad-eval serve` (``stop_at_action``)."""
        if self._probed:
            return
        with self._probe_lock:
            if self._probed:
                return
            try:
                data = self._request("GET", "/models", retries=0)
            except EndpointError as e:
                if e.status is None:
                    return  # unreachable: not cached; the real request retries and reports it
                data = {}  # a server without /v1/models (or refusing it): nothing to learn
            models = [m for m in (data.get("data") or []) if isinstance(m, dict) and m.get("id")]
            ids = [str(m["id"]) for m in models]
            entry = next((m for m in models if m["id"] == self.model), None)
            if entry is None and len(models) == 1:
                entry = models[0]  # llama.cpp-style: one model, answers to any name
                _note(f"note: {self.base_url} serves {entry['id']!r}, not {self.model!r}; "
                      f"recorded as served_model in the manifest")
            elif entry is None and models:
                raise SadEvalError(f"{self.base_url} does not serve model {self.model!r}; it serves "
                                   + ", ".join(map(repr, ids[:10])))
            if entry is not None:
                self.served_model = str(entry["id"])
                if self.stop_at_action is None:
                    self.stop_at_action = entry.get("owned_by") == "sad-eval" and entry["id"] == self.model
                if self.max_context is None:
                    ctx = entry.get("max_model_len") or self._props_context()
                    if not ctx and isinstance(entry.get("meta"), dict):
                        ctx = entry["meta"].get("n_ctx_train")
                    if isinstance(ctx, int) and ctx > 0:
                        self.max_context, self.context_source = ctx, "server"
                root = entry.get("root")
                if self.tokenizer is None and isinstance(root, str) and _has_tokenizer(root):
                    try:
                        self.tokenizer, self.tokenizer_source = _load_tokenizer(root), root
                    except Exception:  # an unreadable folder: keep the estimate
                        pass
            if self.stop_at_action is None:
                self.stop_at_action = False
            self._probed = True

    def _props_context(self) -> int | None:
        """llama.cpp's server reports its context (``-c``) at ``/props``, beside ``/v1``."""
        root = self.base_url[:-len("/v1")] if self.base_url.endswith("/v1") else None
        if not root:
            return None
        try:
            r = self._session.get(root + "/props", headers=self._headers(), timeout=min(self.timeout, 10))
            data = r.json() if r.status_code == 200 else {}
        except Exception:
            return None
        gen = data.get("default_generation_settings") if isinstance(data, dict) else None
        n = (gen or {}).get("n_ctx") if isinstance(gen, dict) else None
        n = n or (data.get("n_ctx") if isinstance(data, dict) else None)
        return n if isinstance(n, int) and n > 0 else None

    def _server_stops_at_action(self) -> bool:
        """Whether to send ``stop_at_action``: as configured, else whether the server is `sad-eval serve`.
        (The probe runs either way: it also checks the model id and learns the context length.)"""
        self.probe()
        return bool(self.stop_at_action)

    # ------------------------------------------------------------ policy

    def messages(self, state: EpisodeState, extra_elide: int = 0) -> list[dict[str, str]]:
        """The conversation, fitted to the context when its length is known (as `HFPolicy.fit`);
        ``extra_elide`` > 0 after the server refused it as too long (its count exceeds ours): fit
        to half the budget per refusal, or elide that many more old observations (never the
        latest) when the length is unknown."""
        shots = self.exemplars.for_task(state.task_id) if hasattr(self.exemplars, "for_task") else self.exemplars
        if self.max_context:
            counter = self.tokenizer if self.tokenizer is not None else EstimatedTokens()
            chat = self.chat and self.api == "chat"
            msgs, _ = build_context(state.env, state.task, state.steps, counter, chat=chat,
                                    max_tokens=int(self.max_context * 0.5 ** extra_elide), exemplars=shots,
                                    reserve=self.decoding.max_new_tokens)
            return msgs
        elide = min(extra_elide, max(0, len(state.steps) - 1))
        return build_messages(state.env, state.task, state.steps, shots, elide=elide)

    def payload(self, state: EpisodeState, extra_elide: int = 0) -> dict[str, Any]:
        """The request body for one state's next turn."""
        msgs = self.messages(state, extra_elide)
        state.memory["messages"] = msgs  # the context this turn is generated after (top-k sidecars)
        d = self.decoding
        body: dict[str, Any] = {"model": self.model, "max_tokens": d.max_new_tokens, "temperature": d.temperature,
                                "stop": [OBS_STOP]}
        if d.temperature > 0:
            body.update(top_p=d.top_p, seed=d.seed + state.sample)  # distinct samples of one task differ
        if self.api == "chat":
            body["messages"] = msgs
        else:
            body["prompt"] = render(msgs, tokenizer=None, chat=False).text
        if self.top_logprobs:
            # a few spare alternatives: llama.cpp merges tokens that are parts of one UTF-8 character
            # into "" entries without bytes, which are dropped (docs/agents.md, "Tested against llama.cpp")
            ask = min(20, self.top_logprobs + 4)
            body.update({"logprobs": True, "top_logprobs": ask} if self.api == "chat" else {"logprobs": ask})
        return body

    def _one(self, state: EpisodeState, server_stop: bool) -> Turn:
        """One turn; a refusal of this conversation becomes ``Turn(error=...)`` (the episode ends errored)."""
        try:
            return self._turn(state, server_stop)
        except EndpointError as e:
            if e.status is None or e.status in RUN_FATAL_STATUS:
                raise  # unreachable, bad key, unknown model: no episode can succeed
            return Turn(reasoning="", action="", error=str(e))

    def _turn(self, state: EpisodeState, server_stop: bool) -> Turn:
        path = "/chat/completions" if self.api == "chat" else "/completions"
        extra = 0
        while True:
            body = self.payload(state, extra)
            if server_stop:
                body["stop_at_action"] = True
            try:
                data = self._request("POST", path, body)
                break
            except EndpointError as e:
                # still too long for the server (our count was off): fit tighter, a few times at most
                if _is_overflow(e) and extra < 8 and (self.max_context or _n_elided(body) < len(state.steps) - 1):
                    extra += 1
                    continue
                raise
        try:
            choice = data["choices"][0]
            text = (choice.get("message") or {}).get("content") if self.api == "chat" else choice.get("text")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._fail(f"endpoint {self.base_url}{path} answered without choices", status=502) from None
        text = text or ""
        # after the action line (newline kept, as local generation does), else before a hallucinated observation
        cut = stop_index(text, (), action_stop=True)
        if cut is None:
            cut = stop_index(text, [OBS_STOP], action_stop=False)
        if cut is not None:
            text = text[:cut]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens")
        ids = tops = None
        if self.top_logprobs:
            ids, tops = self._token_logprobs(choice, text, path)
        p = parse_turn(state.env, text)
        return Turn(reasoning=p.reasoning, action=p.action, raw=text, invalid=not p.valid,
                    tokens=tokens if isinstance(tokens, int) else None, token_ids=ids, top_logprobs=tops)

    def student_tokenizer(self):
        """The student tokenizer the returned tokens are mapped to: the served model's (``tokenizer``),
        else SmolLM2's (loaded once)."""
        if self.tokenizer is not None:
            return self.tokenizer
        if self._tokenizer is None or isinstance(self._tokenizer, (str, os.PathLike)):
            from sad_eval.models import load_tokenizer

            self._tokenizer = load_tokenizer(str(self._tokenizer or "smollm2-135m"))
        return self._tokenizer

    def _token_logprobs(self, choice: dict, text: str, path: str):
        """(ids, per-token top-N (id, log-prob)) of the generated tokens that cover ``text`` (the
        reply after the client-side cut), from the choice's OpenAI log-probs; one clear error when
        they are missing or the server's tokens are not the student tokenizer's."""
        from sad_eval.agents.token_bytes import vocab_bytes

        where = f"endpoint {self.base_url}{path}"
        rows = _logprob_rows(choice.get("logprobs"), self.api)
        if rows is None:
            raise self._fail(f"{where} answered without log-probs (asked for top_logprobs={self.top_logprobs}); "
                             "collecting top-k needs a server that returns them")
        _, index = vocab_bytes(self.student_tokenizer())
        want, got, ids, tops = text.encode(), b"", [], []
        for tok, lp, alts in rows:
            if len(got) >= len(want):
                break
            alts = [(a, v) for a, v in alts if a]  # "" entries: see the request
            if tok not in index and (not tok or "\ufffd".encode() in tok):
                raise self._fail(f"{where}: a token that is part of a UTF-8 character came back as text only "
                                 "(no 'bytes'), so it cannot be mapped to an id; use --api chat")
            if tok not in index:
                raise self._fail(f"{where}: its tokenizer differs from the student's ({_name(self.student_tokenizer())}): "
                                 f"token {tok!r} is not in the student vocabulary; top-k distillation needs the "
                                 "same tokenizer")
            if len(alts) < self.top_logprobs:
                raise self._fail(f"{where} returned {len(alts)} top log-probs for a token, fewer than the "
                                 f"{self.top_logprobs} asked")
            row = []
            for a, v in alts[:self.top_logprobs]:
                if a not in index:
                    raise self._fail(f"{where}: its tokenizer differs from the student's ({_name(self.student_tokenizer())}): "
                                     f"token {a!r} is not in the student vocabulary")
                row.append((index[a], float(v)))
            got += tok
            ids.append(index[tok])
            tops.append(row)
        if not got.startswith(want) and got.decode("utf-8", "replace") != text:
            raise self._fail(f"{where}: the returned tokens do not spell the returned text; its tokenizer differs "
                             f"from the student's ({_name(self.student_tokenizer())})")
        return ids, tops

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        states = list(states)
        if not states:
            return []
        server_stop = self._server_stops_at_action()
        if len(states) == 1 or self.concurrency == 1:
            return [self._one(s, server_stop) for s in states]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(states)),
                                thread_name_prefix="sad-eval-openai") as pool:
            futures = [pool.submit(self._one, s, server_stop) for s in states]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


def _entry_bytes(entry: dict) -> bytes:
    b = entry.get("bytes")
    if isinstance(b, list) and all(isinstance(x, int) for x in b):
        return bytes(b)
    return str(entry.get("token", "")).encode()


def _logprob_rows(lp: Any, api: str) -> list[tuple[bytes, float, list[tuple[bytes, float]]]] | None:
    """OpenAI log-probs -> [(token bytes, log-prob, [(alt bytes, log-prob), ...])], or None.
    Chat: ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}``; completions
    (legacy): ``{"tokens", "token_logprobs", "top_logprobs": [{token: log-prob}]}`` (text only)."""
    if not isinstance(lp, dict):
        return None
    try:
        if api == "chat" or "content" in lp:
            content = lp.get("content")
            if not isinstance(content, list):
                return None
            return [(_entry_bytes(e), float(e["logprob"]),
                     [(_entry_bytes(a), float(a["logprob"])) for a in (e.get("top_logprobs") or [])])
                    for e in content]
        toks, lps, alts = lp.get("tokens"), lp.get("token_logprobs"), lp.get("top_logprobs")
        if not isinstance(toks, list) or not isinstance(lps, list):
            return None
        alts = alts if isinstance(alts, list) else [{}] * len(toks)
        return [(str(t).encode(), float(v), sorted(((str(a).encode(), float(x)) for a, x in (d or {}).items()),
                                                  key=lambda r: -r[1]))
                for t, v, d in zip(toks, lps, alts)]
    except (KeyError, TypeError, ValueError):
        return None


def _name(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def _n_elided(body: dict) -> int:
    msgs = body.get("messages")
    if msgs is not None:
        return sum(1 for m in msgs if m.get("role") == "user" and m.get("content") == ELIDED)
    return body.get("prompt", "").count(ELIDED)


def _note(text: str) -> None:
    import sys

    print(text, file=sys.stderr)


def _has_tokenizer(path: str) -> bool:
    p = os.path.expanduser(path)
    return os.path.isdir(p) and any(os.path.isfile(os.path.join(p, f)) for f in ("tokenizer.json", "tokenizer_config.json"))


def _load_tokenizer(name: Any):
    from sad_eval.models import load_tokenizer

    try:
        return load_tokenizer(str(name))
    except SadEvalError:
        raise
    except Exception as e:
        raise SadEvalError(f"cannot load tokenizer {name!r}: {e}") from None


def _error_detail(r) -> str:
    """A short server error message from an OpenAI-style error body, if any."""
    try:
        data = r.json()
        err = data.get("error") if isinstance(data, dict) else None
        msg = err.get("message") if isinstance(err, dict) else err
    except ValueError:
        msg = r.text
    msg = " ".join(str(msg or "").split())
    return f": {msg[:300]}" if msg else ""


def make_openai_policy(spec: str, base_url: str | None = None, **kw: Any) -> OpenAIPolicy:
    """``openai:MODEL`` + base URL (or ``$OPENAI_BASE_URL``) -> `OpenAIPolicy`; other keywords pass through."""
    if not spec.startswith(SPEC_PREFIX) or not spec[len(SPEC_PREFIX):].strip():
        raise SadEvalError(f"bad agent {spec!r}: an endpoint agent is written openai:MODEL")
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    if not base_url:
        raise SadEvalError(f"agent {spec} needs --base-url (e.g. http://127.0.0.1:8000/v1) or $OPENAI_BASE_URL")
    return OpenAIPolicy(spec[len(SPEC_PREFIX):].strip(), base_url, **kw)
