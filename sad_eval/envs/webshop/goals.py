"""Synthetic goals, as WebShop's `get_synthetic_goals` derives them, in the server's order.

Per instructed product (415 of the 1k): one goal per combination of its option values
(`itertools.product` over the sorted option names), instruction text
`"{instruction}{ with name: value, and name: value}{, and price lower than X.00 dollars}"`,
price upper bound = the larger of two draws from the first four multiples of $10 above the
product's price (none when fewer than two exist). Then `random.seed(233); random.shuffle(goals)`
as the original's server did; session `fixed_N` gets goal N. The result: 6,910 goals.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sad_eval.envs.webshop.catalog import SEED, Catalog, load_catalog

PRICE_RANGE = [10.0 * i for i in range(1, 100)]
NO_BUDGET = 1_000_000.0
SESSION_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")  # use with fullmatch


@dataclass
class Goals:
    goals: list[dict[str, Any]]  # shuffled: index N is session fixed_N's goal
    weights: list[float]

    def __len__(self) -> int:
        return len(self.goals)


def build_goals(catalog: Catalog) -> Goals:
    rng = random.Random(SEED)  # the original drew budgets from its unseeded global RNG
    goals: list[dict[str, Any]] = []
    cnt_atts: dict[str, int] = defaultdict(int)
    for p in catalog.products:
        if not p.get("instruction_text") or not p.get("instruction_attributes"):
            continue
        price = catalog.prices[p["asin"]]
        above = [x for x in PRICE_RANGE if x > price][:4]
        if len(above) >= 2:
            price_upper = sorted(rng.sample(above, 2))[1]
            price_text = f", and price lower than {price_upper:.2f} dollars"
        else:
            price_upper, price_text = NO_BUDGET, ""
        names = sorted(p["options"])
        for combo in itertools.product(*(p["options"][n] for n in names)):
            goal_options = dict(zip(names, combo))
            opt_text = ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
            goals.append({
                "asin": p["asin"],
                "category": p["category"],
                "query": p["query"],
                "name": p["Title"],  # the original overwrote `name` with the Title
                "product_category": p["product_category"],
                "instruction_text": f"{p['instruction_text']}{' with ' + opt_text if opt_text else ''}{price_text}",
                "attributes": list(p["instruction_attributes"]),
                "price_upper": price_upper,
                "goal_options": goal_options,
            })
            for att in p["instruction_attributes"]:
                cnt_atts[att] += 1
    for g in goals:
        g["weight"] = sum(1.0 / cnt_atts[a] for a in g["attributes"]) / len(g["attributes"])
    random.Random(SEED).shuffle(goals)  # == random.seed(233); random.shuffle(goals)
    return Goals(goals, [g["weight"] for g in goals])


_CACHE: dict[int, tuple[Catalog, Goals]] = {}


def load_goals(root: Path | None = None) -> Goals:
    """The goals of the installed data (cached: catalogues are cached per data root)."""
    catalog = load_catalog(root)
    hit = _CACHE.get(id(catalog))
    if hit is None or hit[0] is not catalog:
        hit = _CACHE[id(catalog)] = (catalog, build_goals(catalog))
    return hit[1]


def fixed_index(session_id: str) -> int | None:
    """The goal index a session id pins, by the original's rule: ids containing `fixed` use
    their last `_`-separated field (`fixed_12`, `a1b2_fixed_12`). None for other ids;
    ValueError when the last field is not a number."""
    if "fixed" not in session_id:
        return None
    tail = session_id.rsplit("_", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"session id {session_id!r} contains 'fixed' but does not end in _<goal number>")
    return int(tail)


def goal_index_for(session_id: str, goals: Goals) -> int:
    """Goal index of a session: `fixed_N` -> N; any other id -> a weighted draw (the original's
    `random.choices(goals, weights)`) seeded by the id, so an id always gets the same goal."""
    idx = fixed_index(session_id)
    if idx is not None:
        if idx >= len(goals):
            raise IndexError(f"goal {idx} does not exist (there are {len(goals)} goals: fixed_0..fixed_{len(goals) - 1})")
        return idx
    seed = int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "big")
    return random.Random(seed).choices(range(len(goals)), weights=goals.weights)[0]
