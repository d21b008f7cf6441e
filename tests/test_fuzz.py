"""Seeded, bounded fuzzing of the two HTTP servers: no input may produce a 5xx.

Hypothesis draws URL segments and JSON bodies (derandomized: the same examples every run, a
fixed number of them), the requests go through the real Flask apps (the WebShop app over the
installed catalogue; the model server over a real 2-layer model and tokenizer), and every answer
must be a 2xx/3xx/4xx. A 5xx is a crash a client could trigger.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# text that reaches the routes: ASCII, the page-number look-alikes, brackets, quotes, controls
SEGMENT = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(["1", "0", "-1", "10001", "¹", "①", "٣", "x", "%", "..", "[]", "['a']", "{'Size': 'M'}",
                     "{}", "{'a': 1}", "[1, [2]]", "'", '"', "\n", "\x00", "B000", "fixed_1", "fixed_999999"]),
)


@pytest.fixture(scope="module")
def shop(data_root):
    from sad_eval.envs.webshop.server import build_shop, create_app

    shop = build_shop(data_root)
    app = create_app(shop)
    app.test_client().get("/fixed_1")  # one live session, so the deeper routes are reached
    return app.test_client(), shop.catalog.products[0]["asin"]


def _q(s: str) -> str:
    return quote(s, safe="")


@FUZZ
@given(route=st.integers(0, 5), a=SEGMENT, b=SEGMENT, c=SEGMENT, sid=st.sampled_from(["fixed_1", "abc", "x\n"]),
       post=st.booleans(), real_asin=st.booleans())
def test_webshop_routes_never_answer_5xx(shop, route, a, b, c, sid, post, real_asin):
    client, asin0 = shop
    asin = asin0 if real_asin else a
    kw = _q(repr([b])) if route % 2 else _q(b)
    paths = [f"/{_q(a) or 'x'}",
             f"/search_results/{_q(sid)}/{kw}/{_q(c) or '1'}",
             f"/item_page/{_q(sid)}/{_q(asin)}/{kw}/{_q(c) or '1'}/{_q(a) or '{}'}",
             f"/item_sub_page/{_q(sid)}/{_q(asin)}/{kw}/1/{_q(c) or 'Description'}/{_q(b) or '{}'}",
             f"/done/{_q(sid)}/{_q(asin)}/{_q(c) or '{}'}",
             f"/{_q(sid)}"]
    path = paths[route]
    r = client.post(path, data={"search_query": a}) if post else client.get(path)
    assert r.status_code < 500, (path, r.status_code, r.data[:200])


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    from sad_eval.agents.serve_model import build

    app, server = build(str(tiny_checkpoint), name="tiny", max_batch=2)
    yield app.test_client()
    server.close()


# any code point, lone surrogates included (JSON can carry them as \\udXXX escapes)
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=[]), max_size=30)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(allow_nan=True),
                   st.text(max_size=12))
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=8)
MESSAGE = st.one_of(VALUE, st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]),
                                                  "content": st.one_of(ANY_TEXT, VALUE)}))
FIELDS = st.fixed_dictionaries({}, optional={
    "model": st.one_of(st.just("tiny"), VALUE),
    "messages": st.one_of(st.lists(MESSAGE, max_size=3), VALUE),
    "prompt": st.one_of(ANY_TEXT, st.lists(ANY_TEXT, max_size=3), VALUE),
    # generation stays short: the parser is under test, not the model
    "max_tokens": st.one_of(st.integers(1, 3), VALUE),
    "temperature": st.one_of(st.floats(0, 2), VALUE),
    "top_p": st.one_of(st.floats(0, 1), VALUE),
    "n": st.one_of(st.integers(1, 2), VALUE),
    "seed": st.one_of(st.integers(), VALUE),
    "stop": st.one_of(ANY_TEXT, st.lists(ANY_TEXT, max_size=20), VALUE),
    "stream": VALUE, "logprobs": VALUE, "echo": VALUE, "tools": VALUE, "stop_at_action": VALUE,
    "max_completion_tokens": st.one_of(st.integers(1, 3), VALUE),
})


@FUZZ
@given(body=FIELDS, chat=st.booleans(), mangle=st.sampled_from(["json", "json", "bytes", "truncate", "deep"]))
def test_model_server_never_answers_5xx(model, body, chat, mangle):
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = 2
    raw = json.dumps(body)
    if mangle == "bytes":
        raw = raw.encode() + b"\xff"
    elif mangle == "truncate":
        raw = raw[: len(raw) // 2]
    elif mangle == "deep":  # the body nested 100k deep
        raw = "[" * 100_000 + raw + "]" * 100_000
    path = "/v1/chat/completions" if chat else "/v1/completions"
    r = model.post(path, data=raw, content_type="application/json")
    assert r.status_code < 500, (raw[:300], r.status_code, r.get_data(as_text=True)[:300])
