"""HTML pages of the shop: the same elements and button texts as WebShop's templates (so a
WebShop client, e.g. ReAct's BeautifulSoup scraper, reads them the same way), with our own
markup. Buttons sit in forms whose `action` is the target URL; product links are
`a.product-link`; option radios carry `data-url` and a `<label>` with the value; the done
page has `Your score (min 0.0, max 1.0)` followed by the score in a `<pre>`.
"""

from __future__ import annotations

from typing import Any

from jinja2 import DictLoader, Environment, select_autoescape

from sad_eval.envs.webshop.urls import options_literal, seg

END_BUTTON = "Buy Now"
NEXT_PAGE = "Next >"
PREV_PAGE = "< Prev"
BACK_TO_SEARCH = "Back to Search"
SUB_PAGES = ("Description", "Features", "Reviews", "Attributes")

_BASE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>WebShop</title></head>
<body><div class="container">
{% block body %}{% endblock %}
</div></body></html>"""

# results, item and sub pages show the instruction as the original's templates do: the label, a
# line break, the text (two text nodes: ReAct's client skips exactly these two on those pages)
_INSTRUCTION = """<div id="instruction-text">
<h4>Instruction:<br>{{ instruction }}</h4>
</div>"""

# every button is a one-button form whose action is the target URL, as in the original
_MACROS = """{% macro button(url, label) %}<form method="post" action="{{ url }}"><button type="submit" class="btn">{{ label }}</button></form>{% endmacro %}"""

_TEMPLATES = {
    "base": _BASE,
    "macros": _MACROS,
    "start": """{% extends "base" %}{% block body %}
<div id="logo"><h2>WebShop</h2></div>
<div id="instruction-text"><h4>Instruction: <br>{{ instruction }}</h4></div>
<form id="search-form" method="post" action="{{ home }}">
  <input id="search_input" type="text" name="search_query" placeholder="Search..." required>
  <button type="submit" class="btn">Search</button>
</form>
{% endblock %}""",
    "results": """{% extends "base" %}{% from "macros" import button %}{% block body %}""" + _INSTRUCTION + """
<div class="nav">
{{ button(home, "Back to Search") }}
<p>Page {{ page }} (Total results: {{ total }})</p>
{% if prev_url %}{{ button(prev_url, "< Prev") }}{% endif %}
{{ button(next_url, "Next >") }}
</div>
<div class="results">{% for item in items %}
<div class="result">
  <h4 class="product-asin"><a class="product-link" href="{{ item.url }}">{{ item.asin }}</a></h4>
  <h4 class="product-title">{{ item.title }}</h4>
  <h5 class="product-price">{{ item.price }}</h5>
</div>{% endfor %}
</div>
{% endblock %}""",
    "item": """{% extends "base" %}{% from "macros" import button %}{% block body %}""" + _INSTRUCTION + """
<div class="nav">
{{ button(home, "Back to Search") }}
{{ button(results_url, "< Prev") }}
</div>
<div class="options">{% for name, values in option_rows %}
<div class="option-row"><h4>{{ name }}</h4><div class="radio-toolbar">{% for v in values %}
  <input type="radio" id="radio_{{ loop.index0 }}_{{ name }}" name="{{ name }}" value="{{ v.value }}" data-url="{{ v.url }}"{% if v.checked %} checked{% endif %}>
  <label for="radio_{{ loop.index0 }}_{{ name }}">{{ v.value }}</label>{% endfor %}
</div></div>{% endfor %}
</div>
<div class="product">
  <h2>{{ title }}</h2>
  <h4>Price: {{ price }}</h4>
  <h4>Rating: {{ rating }}</h4>
  <div class="sub-pages">{% for sp in sub_pages %}
  {{ button(sp.url, sp.label) }}{% endfor %}
  </div>
</div>
<div class="buy">{{ button(buy_url, "Buy Now") }}</div>
{% endblock %}""",
    "sub": """{% extends "base" %}{% from "macros" import button %}{% block body %}""" + _INSTRUCTION + """
<div class="nav">
{{ button(home, "Back to Search") }}
{{ button(item_url, "< Prev") }}
</div>
<div class="sub-page" id="{{ sub_page | lower }}">
{% if sub_page == "Description" %}<p class="product-info">{{ product.Description }}</p>
{% elif sub_page == "Features" %}<ul>{% for b in product.BulletPoints %}<li><p class="product-info">{{ b }}</p></li>{% endfor %}</ul>
{% elif sub_page == "Reviews" %}{% for r in product.Reviews %}<div class="review"><h4>"{{ r.title }}"</h4><p>{{ r.score }}</p><p class="content">{{ r.body }}</p></div>{% endfor %}
{% else %}<ul>{% for a in product.Attributes %}<li><p class="product-info">{{ a }}</p></li>{% endfor %}</ul>{% endif %}
</div>
{% endblock %}""",
    # the original's done page: a hidden block with the purchase and the target (what scripts read
    # by id), then the visible score line
    "done": """{% extends "base" %}{% block body %}
<div id="thankyou"><h1>Thank you for shopping with us!</h1></div>
<div id="stats">
<div style="display:none">
  <h2>Purchased</h2>
  <h4 id="asin">asin<pre>{{ asin }}</pre></h4>
  <h4 id="options">options<pre>{{ options | tojson }}</pre></h4>
  <h4 id="purchased_attrs">attrs<pre>{{ product.Attributes }}</pre></h4>
  <h4 id="purchased-category">category<pre>{{ product.category }}</pre></h4>
  <h4 id="purchased-query">query<pre>{{ product.query }}</pre></h4>
  <h4 id="purchased-pc">product category<pre>{{ product.product_category }}</pre></h4>
  <h2>Target</h2>
  <h4 id="goal-asin">asin<pre>{{ goal.asin }}</pre></h4>
  <h4 id="goal-options">options<pre>{{ goal.goal_options }}</pre></h4>
  <h4 id="goal-attrs">attrs<pre>{{ goal.attributes }}</pre></h4>
  <h4 id="goal-price">price upper<pre>{{ goal.price_upper }}</pre></h4>
  <h4 id="goal-instruction-text">instruction text<pre>{{ goal.instruction_text }}</pre></h4>
  <h4 id="goal-category">category<pre>{{ goal.category }}</pre></h4>
  <h4 id="goal-pc">product category<pre>{{ goal.product_category }}</pre></h4>
  <h4 id="goal-query">query<pre>{{ goal.query }}</pre></h4>
  <h4>Goal <div id="goal"><pre>{{ goal_json }}</pre></div></h4>
  <h2>Reward</h2>
</div>
<h3 id="reward">Your score (min 0.0, max 1.0)<pre>{{ reward }}</pre></h3>
<h4 hidden>Reward Details <div id="reward_info"><pre>{{ reward_info_json }}</pre></div></h4>
</div>
{% endblock %}""",
}

_env = Environment(loader=DictLoader(_TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True))


def _template(name: str):
    return _env.get_template(name)  # jinja caches compiled templates


# ------------------------------------------------------------------ URLs (the original's routes)

def home_url(sid: str) -> str:
    return f"/{seg(sid)}"


def results_url(sid: str, keywords: str, page: int) -> str:
    return f"/search_results/{seg(sid)}/{seg(keywords)}/{page}"


def item_url(sid: str, asin: str, keywords: str, page: int, options: dict[str, str]) -> str:
    return f"/item_page/{seg(sid)}/{seg(asin)}/{seg(keywords)}/{page}/{seg(options_literal(options))}"


def sub_url(sid: str, asin: str, keywords: str, page: int, sub_page: str, options: dict[str, str]) -> str:
    return (f"/item_sub_page/{seg(sid)}/{seg(asin)}/{seg(keywords)}/{page}/{seg(sub_page)}/"
            f"{seg(options_literal(options))}")


def done_url(sid: str, asin: str, options: dict[str, str]) -> str:
    return f"/done/{seg(sid)}/{seg(asin)}/{seg(options_literal(options))}"


# ------------------------------------------------------------------ pages

def start_page(sid: str, instruction: str) -> str:
    return _template("start").render(home=home_url(sid), instruction=instruction)


def results_page(sid: str, instruction: str, keywords: str, query: str, page: int, total: int,
                 products: list[dict[str, Any]]) -> str:
    items = [{"asin": p["asin"], "title": p["Title"], "price": p["Price"],
              "url": item_url(sid, p["asin"], keywords, page, {})} for p in products]
    return _template("results").render(
        home=home_url(sid), instruction=instruction, query=query, page=page, total=total, items=items,
        prev_url=results_url(sid, keywords, page - 1) if page > 1 else None,
        next_url=results_url(sid, keywords, page + 1))  # always, as the original (past the end: no results)


def item_page(sid: str, instruction: str, keywords: str, query: str, page: int,
              product: dict[str, Any], options: dict[str, str], show_attrs: bool = False) -> str:
    asin = product["asin"]
    rows = []
    for name, values in product["options"].items():
        rows.append((name, [{"value": v, "checked": options.get(name) == v,
                             "url": item_url(sid, asin, keywords, page, {**options, name: v})} for v in values]))
    subs = SUB_PAGES if show_attrs else SUB_PAGES[:3]
    return _template("item").render(
        home=home_url(sid), instruction=instruction, query=query,
        results_url=results_url(sid, keywords, page), option_rows=rows, title=product["Title"],
        price=product["Price"], rating=product["Rating"],
        sub_pages=[{"label": s, "url": sub_url(sid, asin, keywords, page, s, options)} for s in subs],
        buy_url=done_url(sid, asin, options))


def sub_page(sid: str, instruction: str, keywords: str, query: str, page: int, product: dict[str, Any],
             sub: str, options: dict[str, str]) -> str:
    return _template("sub").render(
        home=home_url(sid), instruction=instruction, query=query, sub_page=sub, product=product,
        item_url=item_url(sid, product["asin"], keywords, page, options))


def done_page(product: dict[str, Any], goal: dict[str, Any], options: dict[str, str], reward: float,
              reward_info: dict[str, Any]) -> str:
    import json

    goal_view = {k: goal[k] for k in ("asin", "category", "query", "name", "product_category", "instruction_text",
                                      "attributes", "price_upper", "goal_options", "weight") if k in goal}
    return _template("done").render(asin=product["asin"], product=product, goal=goal_view, options=options,
                                    reward=reward, goal_json=json.dumps(goal_view, indent=1),
                                    reward_info_json=json.dumps(reward_info, default=str))
