"""WebShop pieces that need no server: the reward formula on hand-worked examples, goals,
URL literal parsing, session bounds, page flattening."""

from __future__ import annotations

import pytest

from sad_eval.envs.webshop.reward import get_reward, normalize_color, title_nouns
from sad_eval.envs.webshop.sessions import SessionStore
from sad_eval.envs.webshop.urls import BadLiteral, parse_keywords, parse_options

TITLE = "Acme Stainless Steel Water Bottle Leak Proof"


def _product(**kw):
    p = {"asin": "B000000001", "name": TITLE, "Title": TITLE, "BulletPoints": ["keeps drinks cold"],
         "Description": "A bottle.", "Attributes": ["leak proof", "bpa free"], "query": "water bottles",
         "product_category": "Sports & Outdoors › Outdoor Recreation › Water Bottles",
         "options": {"color": ["navy blue", "red"], "size": ["12 oz", "24 oz"]}}
    p.update(kw)
    return p


def _goal(**kw):
    g = {"asin": "B000000001", "name": TITLE, "query": "water bottles",
         "product_category": "Sports & Outdoors › Outdoor Recreation › Water Bottles",
         "attributes": ["leak proof", "bpa free"], "goal_options": {"color": "navy blue", "size": "24 oz"},
         "price_upper": 30.0}
    g.update(kw)
    return g


RIGHT = {"color": "navy blue", "size": "24 oz"}


# 2 attributes + 2 options + 1 price = 5 terms; r_type 1 for the same product
@pytest.mark.parametrize("price,options,goal_kw,expected", [
    (20.0, RIGHT, {}, 5 / 5),                                        # perfect purchase
    (20.0, {"color": "navy blue", "size": "12 oz"}, {}, 4 / 5),       # wrong size (exact match only)
    (20.0, {"color": "red", "size": "24 oz"}, {}, 4 / 5),             # wrong colour
    (20.0, {"color": "navy blue"}, {}, 4 / 5),                        # an option left unchosen
    (35.0, RIGHT, {}, 4 / 5),                                         # over budget
    (20.0, RIGHT, {"attributes": ["leak proof", "bpa free", "dishwasher safe"]}, 5 / 6),  # missing attribute
    (20.0, RIGHT, {"attributes": ["leak proof", "stainless steel"]}, 5 / 5),  # attribute found in the title
    (20.0, {"color": "dark blue", "size": "24 oz"}, {}, 5 / 5),       # colours normalise: navy blue ~ dark blue
])
def test_reward_formula(price, options, goal_kw, expected):
    r, info = get_reward(_product(), _goal(**goal_kw), price, options)
    assert r == pytest.approx(expected)
    assert info["r_type"] == 1.0


def test_wrong_product_type_scores_zero():
    other = _product(name="Cozy Fleece Throw Blanket", Title="Cozy Fleece Throw Blanket", Attributes=["machine wash"],
                     query="throw blankets", product_category="Home & Kitchen › Bedding › Blankets",
                     BulletPoints=[], Description="")
    r, info = get_reward(other, _goal(), 20.0, {})
    assert info["title_score"] == 0.0 and info["r_type"] == 0.0 and r == 0.0


def test_weak_type_match_halves_the_reward():
    # desired title nouns: acme stainless steel water bottle leak proof (7); shared: bottle -> 1/7
    other = _product(name="Glass Bottle", Title="Glass Bottle", Attributes=["leak proof"], query="glass jars",
                     product_category="Home & Kitchen › Storage › Jars", BulletPoints=[], Description="")
    r, info = get_reward(other, _goal(), 20.0, {})
    assert info["title_score"] == pytest.approx(1 / 7)
    assert info["r_type"] == 0.5
    assert r == pytest.approx(0.5 * (1 + 0 + 1) / 5)  # leak proof + price


def test_reward_is_capped_at_one():
    # the original could exceed 1 when the bought product has options the goal lacks
    r, _ = get_reward(_product(Title=TITLE + " red 12 oz"), _goal(goal_options={}), 20.0,
                      {"color": "red", "size": "12 oz"})
    assert r == 1.0


def test_color_normalisation_and_title_nouns():
    assert normalize_color("black forest") == "black"
    assert normalize_color("webshop") == "webshop"
    assert title_nouns("The Acme Water Bottle, 24 oz, for Kids") == {"acme", "water", "bottle", "oz", "kids"}


def test_goals_are_deterministic_and_counted(data_root):
    from sad_eval.envs.webshop.env import list_tasks
    from sad_eval.envs.webshop.goals import build_goals, goal_index_for, load_goals
    from sad_eval.envs.webshop.catalog import load_catalog

    goals = load_goals(data_root)
    assert len(goals) == 6910
    again = build_goals(load_catalog(data_root))
    assert [g["instruction_text"] for g in again.goals[:50]] == [g["instruction_text"] for g in goals.goals[:50]]
    assert goal_index_for("fixed_7", goals) == 7 and goal_index_for("abc_fixed_7", goals) == 7
    assert goal_index_for("some-user", goals) == goal_index_for("some-user", goals)
    with pytest.raises(IndexError):
        goal_index_for("fixed_6910", goals)
    with pytest.raises(ValueError):
        goal_index_for("fixed_x", goals)
    g = goals.goals[1]
    assert g["instruction_text"].endswith("and price lower than 50.00 dollars")
    assert len(list_tasks("test", data_root)) == 500 and len(list_tasks("train", data_root)) == 6410


@pytest.mark.parametrize("text,expected", [
    ("{}", {}), ("", {}), ("{'color': 'black'}", {"color": "black"}),
    ('{"size": "men\'s 10", "color": "navy blue"}', {"size": "men's 10", "color": "navy blue"}),
])
def test_parse_options(text, expected):
    assert parse_options(text) == expected


@pytest.mark.parametrize("text", ["{__import__('os'): 1}", "notadict", "{'a': 1}", "{**x}", "{'a': 'b'", "[1]",
                                  "{'a': f'{x}'}", "{" * 5000])
def test_parse_options_refuses(text):
    with pytest.raises(BadLiteral):
        parse_options(text)


def test_parse_keywords():
    assert parse_keywords("['red', 'shoes']") == ["red", "shoes"]
    assert parse_keywords("red shoes") == ["red shoes"]
    with pytest.raises(BadLiteral):
        parse_keywords("[open('x')]")


def test_session_store_expires_and_caps():
    now = [0.0]
    store = SessionStore(lambda sid: 0, max_sessions=3, ttl_s=10, clock=lambda: now[0])
    for sid in "abcd":
        store.open(sid)
    assert len(store) == 3 and store.get("a") is None  # the oldest went past the cap
    now[0] = 5
    store.get("b")
    now[0] = 12  # c and d idle for 12 s > 10; b seen at 5
    assert store.get("c") is None and store.get("b") is not None and len(store) == 1


def test_flatten_page():
    from sad_eval.envs.webshop.html_text import parse_page, render

    html = ("<html><head><title>x</title></head><body><div id='instruction-text'><h4>Instruction: buy</h4></div>"
            "<form action='/s'><button>Back to Search</button></form>"
            "<div style='display: none'>secret</div>"
            "<h4>color</h4><input type='radio' name='color' data-url='/c1' checked><label>black</label>"
            "<input type='radio' name='color' data-url='/c2'><label>red &amp; blue</label>"
            "<h2>A Product</h2><form action='/done'><button>Buy Now</button></form>"
            "<h3>Your score (min 0.0, max 1.0)<pre>0.5</pre></h3></body></html>")
    page = parse_page(html, "http://h/item")
    assert page.reward == 0.5 and page.instruction == "buy"
    assert [c.label for c in page.clickables] == ["Back to Search", "black", "red & blue", "Buy Now"]
    assert page.find("buy now").url == "http://h/done" and page.find("[black]").selected
    page.reward = None
    text = render(page)
    assert "secret" not in text and "color [[black]] [red & blue]" in text
