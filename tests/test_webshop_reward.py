"""WebShop pieces that need no server: the reward formula on hand-worked examples, goals,
URL literal parsing, session bounds, page flattening."""

from __future__ import annotations

import pytest

from sad_eval.envs.webshop.reward import (get_reward, normalize_color, spacy_available, stand_in_nouns,
                                          title_nouns, token_set_ratio, type_reward)
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


# 2 attributes + 2 options + 1 price = 5 terms; r_type 1 for the same product. Options are scored
# per goal option, as (name, value) pairs: ("color", "navy blue") -> "color navy blue" tokens.
@pytest.mark.parametrize("price,options,goal_kw,expected", [
    (20.0, RIGHT, {}, 5 / 5),                                        # perfect purchase
    (20.0, {"color": "navy blue", "size": "12 oz"}, {}, 4 / 5),       # wrong size: {12, oz} vs {size, 24, oz} = 57
    (20.0, {"color": "red", "size": "24 oz"}, {}, 4 / 5),             # wrong colour
    (20.0, {"color": "navy blue"}, {}, 4 / 5),                        # an option left unchosen
    (20.0, {}, {}, 3 / 5),                                            # no option chosen
    (35.0, RIGHT, {}, 4 / 5),                                         # over budget
    (20.0, RIGHT, {"attributes": ["leak proof", "bpa free", "dishwasher safe"]}, 5 / 6),  # missing attribute
    (20.0, RIGHT, {"attributes": ["leak proof", "stainless steel"]}, 5 / 5),  # attribute found in the title
    (20.0, RIGHT, {"attributes": ["Leak-Proof", "bpa free"]}, 5 / 5),  # fuzzy attribute: case and punctuation fold
    (20.0, {"color": "dark blue", "size": "24 oz"}, {}, 5 / 5),       # bought side normalises: dark blue -> blue
    (20.0, {"color": "light blue", "size": "24 oz"}, {}, 5 / 5),      # ... so any blue matches "navy blue"
])
def test_reward_formula(price, options, goal_kw, expected):
    r, info = get_reward(_product(), _goal(**goal_kw), price, options)
    assert r == pytest.approx(expected)
    assert info["r_type"] == 1.0


def test_size_is_fuzzy_not_exact():
    # no exact-match rule for size: "24 oz" is a token subset of ("size", "24 oz (pack of 2)") -> 100
    r, info = get_reward(_product(), _goal(goal_options={"color": "navy blue", "size": "24 oz (pack of 2)"}),
                         20.0, RIGHT)
    assert info["num_option_matches"] == 2 and r == pytest.approx(1.0)
    # ... while a near value is no subset: ("size", "small") vs "x-small" scores 83 <= 85
    assert token_set_ratio("x-small", ("size", "small")) == 83
    r, info = get_reward(_product(), _goal(goal_options={"size": "small"}), 20.0, {"size": "x-small"})
    assert info["num_option_matches"] == 0 and r == pytest.approx(3 / 4)


def test_option_matches_count_goal_options_once_and_never_exceed_one():
    # two bought values both match the one goal option: counted once
    r, info = get_reward(_product(), _goal(goal_options={"color": "navy blue"}), 20.0,
                         {"color": "navy blue", "size": "blue"})
    assert info["num_option_matches"] == 1 and r == pytest.approx(1.0)
    # options the goal lacks add nothing (the old rule counted them and had to cap at 1)
    r, info = get_reward(_product(Title=TITLE + " red 12 oz"), _goal(goal_options={}), 20.0,
                         {"color": "red", "size": "12 oz"})
    assert info["num_option_matches"] == 0 and r == pytest.approx(1.0)


def test_options_have_no_title_fallback():
    # "red" is in the title, but the goal's ("color", "navy blue") is not matched by it
    r, info = get_reward(_product(Title=TITLE + " Red"), _goal(), 20.0, {"color": "red", "size": "24 oz"})
    assert info["num_option_matches"] == 1 and r == pytest.approx(4 / 5)


def test_colour_quirk_correct_value_containing_a_colour_word():
    # bought "rectangular" normalises to "tan" (it contains t-a-n); the goal pair
    # ("shape", "rectangular") is not normalised (its value is no colour name), so the correct
    # value no longer matches: a perfect purchase scores 4/5, as in the original
    assert normalize_color("rectangular") == "tan"
    assert normalize_color(("shape", "rectangular")) == ("shape", "rectangular")
    goal = _goal(goal_options={"shape": "rectangular", "size": "24 oz"})
    r, info = get_reward(_product(), goal, 20.0, {"shape": "rectangular", "size": "24 oz"})
    assert info["num_option_matches"] == 1 and r == pytest.approx(4 / 5)
    # a goal value that *is* a colour name normalises on both sides: "jet black" matches "black"
    assert normalize_color(("color", "black")) == "black"
    r, info = get_reward(_product(), _goal(goal_options={"color": "black"}), 20.0, {"color": "jet black"})
    assert info["num_option_matches"] == 1 and r == pytest.approx(1.0)


def test_wrong_product_type_scores_zero():
    other = _product(name="Cozy Fleece Throw Blanket", Title="Cozy Fleece Throw Blanket", Attributes=["machine wash"],
                     query="throw blankets", product_category="Home & Kitchen › Bedding › Blankets",
                     BulletPoints=[], Description="")
    r, info = get_reward(other, _goal(), 20.0, {})
    assert info["title_score"] == 0.0 and info["r_type"] == 0.0 and r == 0.0


def test_weak_type_match_halves_the_reward():
    # desired title nouns (spaCy): acme stainless steel water bottle leak proof (7); shared: bottle -> 1/7
    other = _product(name="Glass Bottle", Title="Glass Bottle", Attributes=["leak proof"], query="glass jars",
                     product_category="Home & Kitchen › Storage › Jars", BulletPoints=[], Description="")
    r, info = get_reward(other, _goal(), 20.0, {})
    assert info["title_score"] == pytest.approx(1 / 7)
    assert info["r_type"] == 0.5
    assert r == pytest.approx(0.5 * (1 + 0 + 1) / 5)  # leak proof + price


@pytest.mark.parametrize("bought,query,score,r_type", [
    ("Water Bottle Cap", "x", 3 / 5, 1.0),   # title overlap > 0.2 suffices
    ("Bottle Lid", "x", 1 / 5, 0.5),        # 0.2 is not > 0.2: no match
    ("Bottle Lid", "water bottles", 1 / 5, 1.0),  # ... unless the query matches
])
def test_type_rule_thresholds_count_repeated_nouns(bought, query, score, r_type):
    # goal nouns water, bottle, water, bottle, cap: 5 tokens (repeats count), 3 distinct
    goal = _goal(name="Water Bottle Water Bottle Cap", product_category="A › B", goal_options={})
    other = _product(name=bought, Title=bought, query=query, product_category="C › D")
    t = type_reward(other, goal)
    assert t["title_score"] == pytest.approx(score) and t["r_type"] == r_type


def test_title_nouns_come_from_spacy():
    assert spacy_available()
    # spaCy tags the lower-case adjectives ADJ and drops them; the stand-in keeps them
    assert title_nouns("a soft and warm blanket for the small bed") == ("blanket", "bed")
    assert stand_in_nouns("a soft and warm blanket for the small bed") == ["soft", "warm", "blanket", "small", "bed"]
    # "T-Shirt" keeps its "t" as a noun token, so it meets "T Shirts"
    assert "t" in title_nouns("Men's Cotton T-Shirt, Black") and "t" in title_nouns("Men T Shirts Pack")


def test_stand_in_warns_once_without_the_model(monkeypatch, capsys):
    from sad_eval.envs.webshop import reward

    monkeypatch.setattr(reward, "_NLP", None)
    monkeypatch.setattr(reward, "_WARNED", False)
    monkeypatch.setattr(reward, "SPACY_MODELS", ("no_such_spacy_model_xyz",))
    reward.title_nouns.cache_clear()
    try:
        assert reward.title_nouns("a soft blanket") == ("soft", "blanket")
        assert reward.title_nouns("a warm blanket") == ("warm", "blanket")
        err = capsys.readouterr().err
        assert err.count("warning: spaCy model en_core_web_sm is not installed") == 1
    finally:
        reward.title_nouns.cache_clear()
        monkeypatch.setattr(reward, "_NLP", None)


def test_color_normalisation():
    assert normalize_color("black forest") == "black"
    assert normalize_color("violet lavender") == "lavender"  # COLOR_SET order, not word order
    assert normalize_color("webshop") == "webshop"


def test_token_set_ratio_as_thefuzz():
    assert token_set_ratio("Leak-Proof", "leak proof") == 100
    assert token_set_ratio("blue", ("color", "navy blue")) == 100  # the pair's str: "color navy blue"
    assert token_set_ratio("", "x") == 0
    assert token_set_ratio("12 oz", ("size", "24 oz")) == 57


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
