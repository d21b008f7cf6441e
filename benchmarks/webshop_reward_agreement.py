"""Our WebShop reward (`sad_eval/envs/webshop/reward.py`) against a literal reading of the
original `web_agent_site/engine/goal.py::get_reward` (written here independently, in the
original's own structure, on the real `thefuzz` and spaCy `en_core_web_sm`), on generated
purchases: per goal, the goal product with the goal options / no options / each one-wrong-option
variant / all options wrong, a product of the same query and a random product (random options).

    python benchmarks/webshop_reward_agreement.py [--goals 1000] [--json out.json]

Needs `thefuzz` (pip install thefuzz; not a project dependency). Prints the agreement and the
effects docs/webshop.md quotes. Exit status 1 when any purchase disagrees.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sad_eval.envs.webshop import reward as ours  # noqa: E402
from sad_eval.envs.webshop.catalog import load_catalog  # noqa: E402
from sad_eval.envs.webshop.goals import load_goals  # noqa: E402


# ------------------------------------------------------------------ a reading of the original
def reading_of_original(nlp, fuzz):
    colors = ours.COLOR_SET

    def norm(c):
        for base in colors:
            if base in c:
                return base
        return c

    def nouns(text):
        return [t.text.lower() for t in nlp(text) if t.pos_ in ("PNOUN", "NOUN", "PROPN")]

    def get_reward(purchased, goal, price, options):
        query_match = purchased["query"] == goal["query"]
        pc = [x.strip() for x in purchased["product_category"].split("›")]
        gc = [x.strip() for x in goal["product_category"].split("›")]
        category_match = len(set(pc) & set(gc)) >= 2
        p_n, g_n = nouns(purchased["name"]), nouns(goal["name"])
        title_score = 0.2 if len(g_n) == 0 else len(set(p_n) & set(g_n)) / len(g_n)
        r_type = 1.0
        if not (query_match or category_match or title_score > 0.2):
            r_type = 0.5
        if title_score < 0.1:
            r_type = 0.1
        if title_score == 0.0:
            r_type = 0.0
        r_price = price <= goal["price_upper"] if goal["price_upper"] > 0 else None
        n_attr = 0
        for g_attr in goal["attributes"]:
            hit = False
            for p_attr in purchased["Attributes"]:
                if fuzz.token_set_ratio(p_attr, g_attr) > 85:
                    n_attr, hit = n_attr + 1, True
                    break
            if not hit and (g_attr in purchased["Title"].lower()
                            or g_attr in " ".join(purchased["BulletPoints"]).lower()
                            or g_attr in purchased["Description"].lower()):
                n_attr += 1
        go = goal["goal_options"]
        bought = [norm(o) for o in list(options.values())]
        wanted = [norm(o) for o in (go.items() if isinstance(go, dict) else go)]
        n_opt = 0
        for g in wanted:
            for p in bought:
                if fuzz.token_set_ratio(p, g) > 85:
                    n_opt += 1
                    break
        total = (n_attr + n_opt + r_price) / (len(goal["attributes"]) + len(go) + 1)
        return total * r_type

    return get_reward


def purchases(catalog, goals, n_goals, rng):
    """(kind, goal, product, options) tuples."""
    idx = sorted(rng.sample(range(len(goals.goals)), min(n_goals, len(goals.goals))))
    by_query: dict[str, list] = {}
    for p in catalog.products:
        by_query.setdefault(p["query"], []).append(p)
    for i in idx:
        g = goals.goals[i]
        prod = catalog.by_asin[g["asin"]]
        go = g["goal_options"]
        yield "correct", g, prod, dict(go)
        yield "none", g, prod, {}
        for name, val in go.items():
            others = [v for v in prod["options"][name] if v != val]
            if others:
                yield "one_wrong", g, prod, {**go, name: rng.choice(others)}
        wrong = {n: rng.choice([v for v in prod["options"][n] if v != val] or [val]) for n, val in go.items()}
        if wrong != go:
            yield "all_wrong", g, prod, wrong
        same = [p for p in by_query.get(g["query"], []) if p["asin"] != g["asin"]]
        for kind, p in (("same_query", rng.choice(same) if same else None), ("random", rng.choice(catalog.products))):
            if p is not None:
                yield kind, g, p, {n: rng.choice(vs) for n, vs in p["options"].items() if vs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--goals", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    try:
        from thefuzz import fuzz
    except ImportError:
        print("error: needs thefuzz (pip install thefuzz)", file=sys.stderr)
        return 2
    if not ours.spacy_available():
        print("error: needs spaCy's en_core_web_sm (make setup)", file=sys.stderr)
        return 2
    original = reading_of_original(ours._load_nlp(), fuzz)
    catalog, goals = load_catalog(), load_goals()
    rng = random.Random(a.seed)
    t0 = time.time()
    stats: dict[str, dict[str, int]] = {}
    disagree, stand_in_flips, type_flips, n = [], 0, 0, 0
    for kind, g, p, opts in purchases(catalog, goals, a.goals, rng):
        price = catalog.prices[p["asin"]]
        mine, _ = ours.get_reward(p, g, price, opts)
        ref = original(p, g, price, opts)
        s = stats.setdefault(kind, {"n": 0, "agree": 0, "success": 0, "below_1": 0})
        s["n"] += 1
        s["agree"] += abs(mine - ref) < 1e-9
        s["success"] += mine >= 1.0 - 1e-9
        s["below_1"] += mine < 1.0 - 1e-9
        n += 1
        if abs(mine - ref) >= 1e-9 and len(disagree) < 20:
            disagree.append({"kind": kind, "goal": g["asin"], "asin": p["asin"], "options": opts,
                             "ours": mine, "original": ref})
        # the stand-in's effect: the same purchase with the content-word title nouns
        d, q = ours.stand_in_nouns(g["name"]), ours.stand_in_nouns(p["name"])
        ts = 0.2 if not d else len(set(q) & set(d)) / len(d)
        t = ours.type_reward(p, g)
        r_alt = 1.0
        if not (t["query_match"] or t["category_match"] or ts > 0.2):
            r_alt = 0.5
        if ts < 0.1:
            r_alt = 0.1
        if ts == 0.0:
            r_alt = 0.0
        type_flips += r_alt != t["r_type"]
    agree = sum(s["agree"] for s in stats.values())
    out = {"purchases": n, "agree": agree, "agreement": agree / n, "per_kind": stats,
           "stand_in_r_type_flips": type_flips, "seconds": round(time.time() - t0, 1),
           "disagreements": disagree}
    print(json.dumps({k: v for k, v in out.items() if k != "disagreements"}, indent=1))
    for d in disagree[:5]:
        print("disagree:", d)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0 if agree == n else 1


if __name__ == "__main__":
    sys.exit(main())
