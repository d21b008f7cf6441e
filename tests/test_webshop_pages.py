"""WebShop pages as the original renders them, the env's observation formats, and ReAct's own
WebShop client (re-implemented from ysymyth/ReAct WebShop.ipynb: BeautifulSoup over the raw HTML,
URLs built by hand) driving our server unmodified."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests

bs4 = pytest.importorskip("bs4")

q = lambda s: quote(str(s), safe="")  # noqa: E731


@pytest.fixture(scope="module")
def server(data_root):
    from sad_eval.envs.webshop.env import _Server

    srv = _Server(data_root, start_timeout_s=60)
    yield srv.url
    srv.stop()


def _get(url):
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    return r.text


# ------------------------------------------------------------------ ReAct's client, as it scrapes
class ReActClient:
    """ReAct's `webshop_text` + `webshopEnv.step`: visible text nodes of the raw HTML (only
    style/script/head/title/meta dropped), `[button]`, `[[chosen option]]`, the first 3 results,
    the first two plain texts dropped past the search page, the score read after its label."""

    def __init__(self, base):
        self.base, self.s = base, {}

    def text(self, page_type, session, query="", page_num=1, asin="", options=None, subpage=""):
        options = options or {}
        url = {"init": f"{self.base}/{session}",
               "search": f"{self.base}/search_results/{session}/{query}/{page_num}",
               "item": f"{self.base}/item_page/{session}/{asin}/{query}/{page_num}/{options}",
               "item_sub": f"{self.base}/item_sub_page/{session}/{asin}/{query}/{page_num}/{subpage}/{options}",
               "end": f"{self.base}/done/{session}/{asin}/{options}"}[page_type]
        soup = bs4.BeautifulSoup(requests.get(url, timeout=10).text, "html.parser")
        skip = {"style", "script", "head", "title", "meta", "[document]"}
        texts = [t for t in soup.find_all(string=True)
                 if t.parent.name not in skip and not isinstance(t, bs4.element.Comment)]
        obs, option_type, opts, asins, cnt, prod_cnt, just_prod = "", "", {}, [], 0, 0, 0
        for t in texts:
            if t.replace("\n", "").replace(" ", "") == "":
                continue
            if t.parent.name == "button":
                piece = f"\n[{t}] "
            elif t.parent.name == "label":
                piece = f"[[{t}]]" if f"'{t}'" in url else f"[{t}]"
                opts[str(t)] = option_type
            elif t.parent.get("class") == ["product-link"]:
                piece = f"\n[{t}] " if prod_cnt < 3 else ""
                prod_cnt += 1
                asins.append(str(t))
                just_prod = 0
            else:
                piece = f"\n{t} "
                if cnt < 2 and page_type != "init":
                    piece = ""
                if just_prod <= 2 and prod_cnt >= 4:
                    piece = ""
                option_type = str(t)
                cnt += 1
            just_prod += 1
            obs += piece
        info = {}
        if opts:
            info["option_types"] = opts
        if asins:
            info["asins"] = asins
        strs = [str(t) for t in texts]
        if "Your score (min 0.0, max 1.0)" in strs:
            i = strs.index("Your score (min 0.0, max 1.0)")
            info["reward"] = float(strs[i + 1])
            obs = "Your score (min 0.0, max 1.0): " + strs[i + 1]
        return obs, info

    def step(self, session, action):
        done, said = False, None
        st = self.s.get(session)
        if action == "reset":
            self.s[session] = st = {"session": session, "page_type": "init"}
        elif action.startswith("search["):
            assert st["page_type"] == "init"
            self.s[session] = st = {"session": session, "page_type": "search", "query": action[7:-1], "page_num": 1}
        elif action.startswith("click["):
            b = action[6:-1]
            if b == "Buy Now":
                assert st["page_type"] == "item"
                st["page_type"], done = "end", True
            elif b == "Back to Search":
                self.s[session] = st = {"session": session, "page_type": "init"}
            elif b == "< Prev":
                st["page_type"] = {"item_sub": "item", "item": "search"}[st["page_type"]]
            elif b in ("Description", "Features", "Reviews", "Attributes"):
                assert st["page_type"] == "item"
                st["page_type"], st["subpage"] = "item_sub", b
            elif st["page_type"] == "search":
                assert b in st.get("asins", [])
                st["page_type"], st["asin"] = "item", b
            else:
                assert b in st["option_types"]
                st.setdefault("options", {})[st["option_types"][b]] = b
                said = f"You have clicked {b}."
        kw = {k: v for k, v in st.items() if k not in ("page_type", "session", "asins", "option_types", "reward")}
        obs, info = self.text(st["page_type"], session, **kw)
        st.update(info)
        return said or obs, info.get("reward", 0.0), done


ACTIONS = ["search[high waist yoga shorts butt lifting]", "click[B09QCP4579]", "click[Features]", "click[< Prev]",
           "click[black]", "click[3x-large]", "click[Buy Now]"]


def test_react_client_buys_on_our_server_and_our_react_format_matches_it(server, data_root):
    from sad_eval.envs.webshop.env import WebShopEnv

    client = ReActClient(server)
    env = WebShopEnv(split="test", data_root=data_root, server_url=server, obs_format="react")
    try:
        obs_client, _, _ = client.step("fixed_1", "reset")
        obs_env, _ = env.reset(options={"task_id": "fixed_1"})
        assert obs_env == obs_client  # and as in ReAct's prompt: "Instruction:  " keeps the page's space
        assert obs_client.startswith("\nWebShop \nInstruction:  \nFind me butt lifting")
        for action in ACTIONS:
            obs_client, reward, done = client.step("fixed_1", action)
            obs_env, r_env, term, _, _ = env.step(action)
            assert obs_env == obs_client, action
            assert (r_env, term) == (reward, done)
        assert done and reward == 1.0
    finally:
        env.close()


def test_react_client_sees_three_results_and_the_page_line(server):
    client = ReActClient(server)
    client.step("fixed_1", "reset")
    obs, _, _ = client.step("fixed_1", "search[high waist yoga shorts butt lifting]")
    # the instruction's two text nodes are dropped: no "Current Query" line leaks in
    assert obs.startswith("\n[Back to Search] \nPage 1 (Total results: 50) \n[Next >] \n[B09QCP4579] \n")
    assert obs.count("\n[B0") == 3 and "Query" not in obs
    assert len(client.s["fixed_1"]["asins"]) == 10


# ------------------------------------------------------------------ pages as the original's
def test_pages_show_the_instruction_as_the_original(server, data_root):
    _get(f"{server}/fixed_1")
    res = _get(f"{server}/search_results/fixed_1/{q(['yoga', 'shorts'])}/1")
    item = _get(f"{server}/item_page/fixed_1/B09QCP4579/yoga%20shorts/1/%7B%7D")
    sub = _get(f"{server}/item_sub_page/fixed_1/B09QCP4579/yoga%20shorts/1/Features/%7B%7D")
    for html in (res, item, sub):
        assert "<h4>Instruction:<br>Find me butt lifting" in html and "Current Query" not in html


def test_next_is_always_shown(server):
    _get(f"{server}/fixed_1")
    last = _get(f"{server}/search_results/fixed_1/{q(['yoga', 'shorts'])}/5")  # results 41-50 of 50
    past = _get(f"{server}/search_results/fixed_1/{q(['yoga', 'shorts'])}/6")  # nothing left
    short = _get(f"{server}/search_results/fixed_1/{q(['zzzz', 'reclaimed', 'console'])}/1")
    for html in (last, past, short):
        assert "Next &gt;</button>" in html
    assert 'class="product-link"' not in past and "(Total results: 50)" in past


def test_empty_sub_pages_have_no_filler(server, data_root):
    from sad_eval.envs.webshop.catalog import load_catalog
    from sad_eval.envs.webshop.obs_formats import simple_text

    cat = load_catalog(data_root)
    bare = next(p for p in cat.products if not p["Reviews"])
    _get(f"{server}/fixed_1")
    for sub in ("Reviews", "Description", "Features"):
        html = _get(f"{server}/item_sub_page/fixed_1/{bare['asin']}/x/1/{sub}/%7B%7D")
        for filler in ("No reviews found", "No description", "No features"):
            assert filler not in html
    html = _get(f"{server}/item_sub_page/fixed_1/{bare['asin']}/x/1/Reviews/%7B%7D")
    assert simple_text(html).endswith("Back to Search [SEP] < Prev")


def test_done_page_has_the_hidden_purchase_and_target_block(server, goals_for_pages):
    from sad_eval.envs.webshop.obs_formats import simple_text

    g = goals_for_pages[1]
    _get(f"{server}/fixed_1")
    html = _get(f"{server}/done/fixed_1/B06Y3VLDFB/%7B%7D")  # the wrong product
    soup = bs4.BeautifulSoup(html, "html.parser")
    assert soup.find(id="goal-asin").pre.text == g["asin"]
    assert soup.find(id="asin").pre.text == "B06Y3VLDFB"
    assert soup.find(id="goal-instruction-text").pre.text == g["instruction_text"]
    assert soup.find(id="goal-price").pre.text == str(g["price_upper"])
    assert soup.find(id="reward_info") is not None
    assert "display:none" in str(soup.find(id="goal-asin").find_parent("div"))
    # ... none of it reaches an agent's observation
    assert simple_text(html) == "Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] 0.0"


@pytest.fixture(scope="module")
def goals_for_pages(data_root):
    from sad_eval.envs.webshop.goals import load_goals

    return load_goals(data_root).goals


# ------------------------------------------------------------------ the env's formats
def test_simple_format_is_webagenttextenv_text(server, data_root):
    from sad_eval.envs.webshop.env import WebShopEnv

    env = WebShopEnv(split="test", data_root=data_root, server_url=server, obs_format="simple")
    try:
        obs, _ = env.reset(options={"task_id": "fixed_1"})
        assert obs.startswith("WebShop [SEP] Instruction: [SEP] Find me butt lifting") and obs.endswith(" [SEP] Search")
        obs, *_ = env.step("search[high waist yoga shorts butt lifting]")
        assert obs.startswith("Instruction: [SEP] Find me butt lifting")
        assert " [SEP] Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] B09QCP4579 [SEP] " in obs
        assert obs.count(" [SEP] B0") == 10
        obs, *_ = env.step("click[B09QCP4579]")
        assert " [SEP] < Prev [SEP] color [SEP] black [SEP] blue" in obs and obs.endswith("Reviews [SEP] Buy Now")
        same, _, _, _, info = env.step("click[no such thing]")
        assert same == obs and info["invalid_action"]  # WebAgentTextEnv leaves the page as it was
    finally:
        env.close()


def test_full_format_stays_the_default_and_bad_formats_fail(server, data_root):
    from sad_eval.envs.webshop.env import WebShopEnv
    from sad_eval.errors import SadEvalError

    env = WebShopEnv(split="test", data_root=data_root, server_url=server)
    try:
        assert env.obs_format == "full"
        env.reset(options={"task_id": "fixed_1"})
        env.step("search[high waist yoga shorts butt lifting]")
        obs, *_ = env.step("click[B09QCP4579]")
        obs, *_ = env.step("click[black]")
        assert "color [[black]] [blue]" in obs
        obs, _, _, _, info = env.step("think[a thought]")  # only ReAct's client knows think[]
        assert info["invalid_action"] and obs.startswith("Invalid action")
    finally:
        env.close()
    with pytest.raises(SadEvalError, match="obs_format"):
        WebShopEnv(split="test", data_root=data_root, server_url=server, obs_format="html")
