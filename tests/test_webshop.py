"""The WebShop server for real on a loopback port, and the client env + oracle against it."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import quote

import pytest
import requests

from sad_eval.envs.base import EnvError

q = lambda s: quote(str(s), safe="")  # noqa: E731


@pytest.fixture(scope="session")
def server(data_root):
    from sad_eval.envs.webshop.env import _Server

    srv = _Server(data_root, start_timeout_s=60)
    yield srv.url
    srv.stop()


@pytest.fixture(scope="session")
def goals(data_root):
    from sad_eval.envs.webshop.goals import load_goals

    return load_goals(data_root).goals


def _get(url, **kw):
    return requests.get(url, timeout=10, **kw)


def test_routes_render(server, goals):
    g = goals[1]
    home = _get(f"{server}/fixed_1")
    assert home.status_code == 200
    assert g["instruction_text"].replace("'", "&#39;") in home.text and 'name="search_query"' in home.text
    res = requests.post(f"{server}/fixed_1", data={"search_query": "High Waist Yoga Shorts"}, timeout=10)
    assert res.status_code == 200 and "/search_results/fixed_1/" in res.url
    for text in ("Back to Search", "Next &gt;", "Page 1 (Total results: 50)", 'class="product-link"', "$13.99"):
        assert text in res.text
    assert "&lt; Prev" in _get(res.url[:-1] + "2").text
    item = _get(f"{server}/item_page/fixed_1/{g['asin']}/yoga%20shorts/1/{q({'color': 'black'})}")
    assert item.status_code == 200
    for text in ("Back to Search", "&lt; Prev", "Description", "Features", "Reviews", "Buy Now", "3x-large",
                 "Price: $13.99", 'type="radio"', "checked"):
        assert text in item.text
    for sub in ("Description", "Features", "Reviews", "Attributes"):
        r = _get(f"{server}/item_sub_page/fixed_1/{g['asin']}/yoga%20shorts/1/{sub}/%7B%7D")
        assert r.status_code == 200 and "&lt; Prev" in r.text
    done = _get(f"{server}/done/fixed_1/{g['asin']}/%7B%7D")
    assert done.status_code == 200 and "Your score (min 0.0, max 1.0)" in done.text
    assert _get(f"{server}/healthz").json()["goals"] == 6910


def test_search_returns_relevant_products(server):
    from sad_eval.envs.webshop.html_text import parse_page

    r = _get(f"{server}/fixed_0")
    assert r.ok
    page = parse_page(_get(f"{server}/search_results/fixed_0/{q(str(['console', 'table', 'reclaimed', 'wood']))}/1").text, server)
    asins = [c.label for c in page.clickables if c.kind == "product"]
    assert len(asins) == 10 and asins[0] == "B06Y3VLDFB"  # "Vhomes Lights Reclaimed Wood Console Table"
    page = parse_page(_get(f"{server}/search_results/fixed_0/{q('butt lifting yoga shorts high waist')}/1").text, server)
    assert "B09QCP4579" in [c.label for c in page.clickables]


def test_scripted_purchases_score_per_formula(server, goals):
    """fixed_1: 4 attributes, 2 options (color black, size 3x-large), budget $50; price $13.99."""
    g = goals[1]
    _get(f"{server}/fixed_1")

    def buy(asin, options):
        from sad_eval.envs.webshop.html_text import parse_page

        r = _get(f"{server}/done/fixed_1/{asin}/{q(options)}")
        assert r.status_code == 200
        return parse_page(r.text, r.url).reward

    assert buy(g["asin"], g["goal_options"]) == 1.0
    assert buy(g["asin"], {"color": "black", "size": "small"}) == pytest.approx(6 / 7)  # one option wrong
    assert buy(g["asin"], {}) == pytest.approx(5 / 7)  # no options chosen
    # another product: high waisted jeans share 2 attributes, the category path, and are in budget
    assert buy("B09PBPZ24Z", {}) == pytest.approx(3 / 7)
    assert buy("B06Y3VLDFB", {}) == 0.0  # a console table: wrong product type


@pytest.mark.parametrize("path,code", [
    ("/search_results/fixed_3/shoes/abc", 400),
    ("/search_results/no-such-session/shoes/1", 404),
    ("/item_page/fixed_3/NOTANASIN0/x/1/%7B%7D", 404),
    ("/item_page/fixed_3/B09QCP4579/x/1/" + q("{__import__('os')}"), 400),
    ("/item_page/fixed_3/B09QCP4579/x/1/notadict", 400),
    ("/done/fixed_3/B09QCP4579/" + q("{'color': 'nope'}"), 400),
    ("/done/fixed_3/B09QCP4579/" + q("{'a': 'b'"), 400),
    ("/fixed_99999", 404),
    ("/bad%20session", 400),
    ("/fixed_x", 400),
    ("/item_sub_page/fixed_3/B09QCP4579/x/1/Bogus/%7B%7D", 404),
    ("/search_results/fixed_3/" + q("[1, 2]") + "/1", 400),
    ("/nothing/here/at/all/x/y/z/w", 404),
])
def test_malformed_urls_are_4xx(server, path, code):
    _get(f"{server}/fixed_3")
    r = _get(server + path)
    assert r.status_code == code, r.text
    assert r.text.strip() and "Traceback" not in r.text


def test_env_episode_with_oracle(server, data_root):
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs import make_env
    from sad_eval.harness import run_episode

    env = make_env("webshop", split="test", data_root=data_root, server_url=server)  # no goal facts needed
    try:
        oracle = make_expert("webshop")
        for task in ("fixed_1", "fixed_2", "fixed_4"):  # (fixed_3: its product is not found from the page)
            ep = run_episode(env, oracle, "webshop", task, split="test")
            assert ep.status == "ok" and ep.success and ep.score == 1.0, (task, ep.steps[-1].observation)
            assert ep.steps[0].action.startswith("search[") and ep.steps[-1].action == "click[Buy Now]"
            assert all(s.reasoning for s in ep.steps)
        assert "$" in ep.steps[1].reasoning  # cites the price it checks
    finally:
        env.close()


def test_env_actions_and_step_cap(server, data_root):
    from sad_eval.envs.webshop.env import WebShopEnv

    env = WebShopEnv(split="test", data_root=data_root, server_url=server, max_steps=4)
    try:
        obs, info = env.reset(options={"index": 1})
        assert info["task_id"] == "fixed_1" and "privileged" not in info
        assert obs.startswith("WebShop\nInstruction:") and obs.endswith("[Search]")
        obs, r, term, trunc, info = env.step("click[B09QCP4579]")
        assert obs.startswith("Invalid action") and not term and not trunc
        obs, r, term, trunc, info = env.step("search[high waist yoga shorts]")
        assert "[B09QCP4579]" in obs and "Next >" in info["clickables"] and info["page"] == "results"
        obs, r, term, trunc, info = env.step("search[again]")
        assert obs.startswith("Invalid action") and "Back to Search" in obs
        obs, r, term, trunc, info = env.step("do something")
        assert trunc and not term and info["success"] is False and info["score"] == 0.0
    finally:
        env.close()


def test_env_spawns_and_stops_its_server(data_root):
    from sad_eval.envs.webshop.env import WebShopEnv

    env = WebShopEnv(split="test", data_root=data_root)
    proc = env._server.proc
    obs, info = env.reset(options={"task_id": "fixed_5"})
    assert info["url"].startswith("http://127.0.0.1:") and "[Search]" in obs
    env.close()
    assert proc.poll() is not None


def test_server_down_raises_one_env_error(data_root):
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs.webshop.env import WebShopEnv
    from sad_eval.harness import run_episode

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    env = WebShopEnv(data_root=data_root, server_url=f"http://127.0.0.1:{port}", retries=2, backoff_s=0.01,
                     privileged=True)
    t0 = time.monotonic()
    with pytest.raises(EnvError, match=r"unreachable after 3 attempts"):
        env.reset(options={"task_id": "fixed_0"})
    assert time.monotonic() - t0 < 5
    ep = run_episode(env, make_expert("webshop"), "webshop", "fixed_0")
    assert ep.status == "error" and "unreachable" in ep.error
    env.close()


def test_concurrent_sessions_are_isolated(server, goals):
    """8 sessions buy their own goal at once; each gets 1.0, and a session cannot see another's goal."""
    from sad_eval.envs.webshop.html_text import parse_page

    results: dict[int, float] = {}

    def shop(i: int) -> None:
        sid = f"iso{i}_fixed_{i}"
        g = goals[i]
        with requests.Session() as http:
            assert g["instruction_text"][:30].replace("'", "&#39;") in http.get(f"{server}/{sid}", timeout=10).text
            r = http.get(f"{server}/done/{sid}/{g['asin']}/{q(g['goal_options'])}", timeout=10)
            results[i] = parse_page(r.text, r.url).reward

    threads = [threading.Thread(target=shop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: 1.0 for i in range(8)}


def test_serve_command_registers():
    import typer
    from typer.testing import CliRunner

    from sad_eval.envs.webshop.cli import register

    group = typer.Typer()
    register(group)

    @group.command("other")
    def _other():  # a group needs two commands to keep the name `webshop`
        pass

    res = CliRunner().invoke(group, ["webshop", "--help"])
    assert res.exit_code == 0 and "--port" in res.output and "--goals" in res.output
    res = CliRunner().invoke(group, ["webshop", "--goals", "human"])
    assert res.exit_code != 0
