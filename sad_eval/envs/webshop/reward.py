"""The purchase reward of WebShop's `web_agent_site/engine/goal.py::get_reward`, re-implemented.

    reward = r_type * (attr_matches + option_matches + [price <= price_upper])
                    / (len(goal attributes) + len(goal options) + 1)

- attribute match: a goal attribute fuzzy-matches (`token_set_ratio > 85`) one of the product's
  attributes, or appears verbatim in its title, features or description;
- option match (per purchased option): `size` must equal a goal option exactly, other options
  fuzzy-match one (`> 85`), both after colour normalisation; failing that, the value counts if
  it appears in the title, features or description;
- r_type: 1.0 when the query, the category path (>= 2 shared levels) or the title overlap
  (> 0.2) matches, else 0.5; 0.1 when the title overlap < 0.1; 0.0 when it is 0.

Deviation: the title overlap counts shared *noun* tokens, found in the original by spaCy's
en_core_web_lg tagger (NOUN/PROPN). No spaCy model is available here, so `title_nouns` keeps
the content words of a title (alphabetic tokens, not stopwords, not numbers). On Title-Case
product names spaCy tags most content words PROPN/NOUN, so the two sets are close; where they
differ it is adjectives we keep. An identical title still scores 1.0 (docs/webshop.md).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from rapidfuzz import fuzz

EXACT_MATCH_OPTS = ("size",)

# The colour base names of WebShop's engine/normalize.py (COLOR_SET), in its order: the first
# one contained in an option value replaces it ("navy blue" -> "blue", "black forest" -> "black").
COLOR_SET = (
    "alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze brown "
    "burgundy camel camo caramel champagne charcoal cheetah chestnut chocolate christmas coffee "
    "cognac copper coral cranberry cream crystal dark denim eggplant elephant espresso fuchsia gold "
    "granite grape graphite grass gray green grey heather indigo ivory ivy khaki lavender lemon "
    "leopard light lilac lime magenta maroon mauve merlot midnight mint mocha multicolor mushroom "
    "mustard natural navy nude olive orange peach pewter pink plum purple rainbow red rose royal "
    "rust sand sapphire seashell silver skull slate steel stone stonewash sunflower tan taupe teal "
    "tiger turquoise violet walnut wheat white wine yellow"
).split()

# Function words a POS tagger would not call nouns (determiners, prepositions, pronouns, ...).
_STOP = frozenset(
    "a an the and or nor but if then so of for to in on at by with from into onto over under up "
    "down out off as per via about above below between among through during without within upon "
    "is are was were be been being am do does did has have had it its this that these those "
    "he she they we you i me my our your their his her them us who whom which what when where "
    "why how all any both each few more most other some such no not only own same than too very "
    "can will just should now also etc amp x".split()
)
_WORD = re.compile(r"[a-z]+")


def normalize_color(value: str) -> str:
    for base in COLOR_SET:
        if base in value:
            return base
    return value


def title_nouns(title: str) -> set[str]:
    """Stand-in for spaCy's NOUN/PROPN tokens of a title (see module docstring)."""
    return {w for w in _WORD.findall(title.lower()) if len(w) > 1 and w not in _STOP}


def _in_text(value: str, product: dict[str, Any]) -> bool:
    return (value in product["Title"].lower() or value in " ".join(product["BulletPoints"]).lower()
            or value in product["Description"].lower())


def type_reward(product: dict[str, Any], goal: dict[str, Any]) -> dict[str, Any]:
    query_match = product["query"] == goal["query"]
    p_cat = {x.strip() for x in product["product_category"].split("›")}
    g_cat = {x.strip() for x in goal["product_category"].split("›")}
    category_match = len(p_cat & g_cat) >= 2
    desired = title_nouns(goal["name"])
    purchased = title_nouns(product["name"])
    title_score = 0.2 if not desired else len(purchased & desired) / len(desired)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {"r_type": r_type, "query_match": query_match, "category_match": category_match,
            "title_score": title_score}


def attribute_matches(product: dict[str, Any], goal_attrs: Iterable[str]) -> int:
    n = 0
    for g in goal_attrs:
        if any(fuzz.token_set_ratio(p, g) > 85 for p in product["Attributes"]) or _in_text(g, product):
            n += 1
    return n


def option_matches(product: dict[str, Any], goal_options: list[str], purchased: dict[str, str]) -> int:
    goal_norm = [normalize_color(o) for o in goal_options]
    n = 0
    for name, value in purchased.items():
        v = normalize_color(value)
        if name.lower() in EXACT_MATCH_OPTS:
            matched = v in goal_norm
        else:
            matched = any(fuzz.token_set_ratio(g, v) > 85 for g in goal_norm)
        if matched or _in_text(v, product):
            n += 1
    return n


def get_reward(product: dict[str, Any], goal: dict[str, Any], price: float,
               options: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """(reward in [0, 1], components) for buying `product` at `price` with `options`."""
    t = type_reward(product, goal)
    goal_opts = goal["goal_options"]
    goal_values = list(goal_opts.values()) if isinstance(goal_opts, dict) else list(goal_opts)
    r_price = price <= goal["price_upper"] if goal["price_upper"] > 0 else None
    n_att = attribute_matches(product, goal["attributes"])
    n_opt = option_matches(product, goal_values, options)
    denom = len(goal["attributes"]) + len(goal_values) + 1
    # min(): the original could exceed 1 when the bought product has options the goal lacks
    reward = min(1.0, (n_att + n_opt + bool(r_price)) / denom) * t["r_type"]
    info = {**t, "r_att": n_att / len(goal["attributes"]) if goal["attributes"] else None,
            "w_att": len(goal["attributes"]) / denom, "num_attr_matches": n_att,
            "num_option_matches": n_opt, "r_price": r_price, "w_price": 1 / denom}
    if goal_values:
        info["r_option"] = n_opt / len(goal_values)
        info["w_option"] = len(goal_values) / denom
    return reward, info
