"""The WebShop oracle teacher: a scripted shopper that knows the goal (`info["privileged"]`).

It plays like a careful person: search with the instruction's product words, scan the result
titles and prices, open the goal product, pick each requested option, check the budget, buy.
Its reasoning cites what is on the page (titles, prices, the attributes and options it checks)
so the REASON spans teach a student how to read the page. The goal ASIN only decides *which*
result it opens; it is never written in a query. When the goal product does not show up in the
first pages of its queries it buys the visible product that best fits the attributes and
budget (a partial reward), as a person would.

Build the env with `oracle=True` (`ENV_KWARGS`) so that `info["privileged"]` holds the goal.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from rapidfuzz import fuzz

from sad_eval.agents.base import EpisodeState, Turn
from sad_eval.errors import SadEvalError

ENV_KWARGS = {"oracle": True}
_ASIN_LINE = re.compile(r"^\[([A-Za-z0-9]{10})\]$")
_PRICE = re.compile(r"\$\s?([\d,]+(?:\.\d+)?)")
_LEAD = re.compile(r"^\s*(find me|i need|i want|i am looking for|i'm looking for|looking for|get me|buy)\s+", re.I)


def _ws(s: str) -> str:
    """Whitespace as the page shows it (option values may hold non-breaking spaces)."""
    return " ".join(s.split())


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _short(title: str, n: int = 60) -> str:
    return title if len(title) <= n else title[: n - 1].rsplit(" ", 1)[0] + "…"


def _first_price(text: str) -> float | None:
    m = _PRICE.search(text)
    return float(m.group(1).replace(",", "")) if m else None


def parse_results(observation: str) -> list[dict[str, Any]]:
    """(asin, title, price text) of each product on a results page observation."""
    lines = observation.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = _ASIN_LINE.match(line.strip())
        if m:
            title = lines[i + 1].strip() if i + 1 < len(lines) else ""
            price = lines[i + 2].strip() if i + 2 < len(lines) else ""
            out.append({"asin": m.group(1), "title": title, "price": price})
    return out


def base_request(goal: dict[str, Any]) -> str:
    """The instruction without its option and price clauses and its lead-in ("Find me ...")."""
    text = goal["instruction_text"]
    text = re.sub(r",? and price lower than [\d.,]+ dollars\s*$", "", text)
    opts = goal.get("goal_options") or {}
    if opts:
        first = next(iter(opts))
        cut = text.rfind(f" with {first}: ")
        if cut > 0:
            text = text[:cut]
    return _LEAD.sub("", text).strip()


def queries(goal: dict[str, Any]) -> list[str]:
    """Search queries in the order tried: the request's words with the option values, then
    product type + attributes, then the whole instruction (less the price)."""
    opts = " ".join((goal.get("goal_options") or {}).values())
    full = re.sub(r",? and price lower than [\d.,]+ dollars\s*$", "", goal["instruction_text"])
    cands = [f"{base_request(goal)} {opts}", " ".join([goal.get("query", ""), *goal.get("attributes", [])]),
             _LEAD.sub("", full)]
    out: list[str] = []
    for q in cands:
        q = " ".join(re.sub(r"[,;:]", " ", q).lower().split())
        if q and q not in out:
            out.append(q)
    return out


def _attrs_in(title: str, attrs: Sequence[str]) -> list[str]:
    t = title.lower()
    return [a for a in attrs if a.lower() in t or fuzz.partial_ratio(a.lower(), t) > 90]


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


class WebShopOracle:
    """Policy `oracle`; `max_pages`: result pages scanned for each query before trying the next."""

    name = "oracle"

    def __init__(self, max_pages: Sequence[int] = (3, 2, 2), max_steps: int = 15):
        self.max_pages = max_pages
        self.max_steps = max_steps  # the env's step cap: leave room to open, choose options, buy

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        return [self._turn(s) for s in states]

    # ------------------------------------------------------------------ one turn
    def _turn(self, state: EpisodeState) -> Turn:
        goal = state.info.get("privileged")
        if not goal:
            raise SadEvalError("the WebShop oracle needs the goal: build the env with oracle=True")
        mem = state.memory
        mem.setdefault("queries", queries(goal))
        mem.setdefault("q", 0)
        mem.setdefault("pages", 0)
        page = state.info.get("page", "search")
        if page == "search":
            return self._search(goal, mem)
        if page == "results":
            return self._results(goal, mem, state)
        if page == "item":
            return self._item(goal, mem, state)
        return Turn(f"This page has the {page} details; I have what I need, so I go back to the product.",
                    "click[< Prev]")

    def _search(self, goal: dict[str, Any], mem: dict[str, Any]) -> Turn:
        q = mem["queries"][min(mem["q"], len(mem["queries"]) - 1)]
        mem["pages"] = 0
        opts = goal.get("goal_options") or {}
        want = base_request(goal)
        parts = [f"I need {want}"]
        if opts:
            parts.append("with " + _join([f"{k} {v}" for k, v in opts.items()]))
        budget = goal.get("price_upper", 0)
        if 0 < budget < 1e6:
            parts.append(f"for less than {_money(budget)}")
        why = {0: "I'll search with the product type, its key features and the option values; options are "
                  "picked on the product page.",
               1: "My first search did not surface a matching product, so I'll search with just the product "
                  "type and the required attributes."}.get(mem["q"], "The earlier searches did not surface it, so "
                                                              "I'll search with the request's own wording.")
        return Turn(" ".join(parts) + ". " + why, f"search[{q}]")

    def _results(self, goal: dict[str, Any], mem: dict[str, Any], state: EpisodeState) -> Turn:
        results = parse_results(state.observation)
        clickables = state.info.get("clickables", [])
        attrs = goal.get("attributes", [])
        budget = goal.get("price_upper", 1e6)
        target = next((r for r in results if r["asin"].upper() == goal["asin"].upper()), None)
        if target is not None:
            mem["chosen"] = target["asin"]
            seen = _attrs_in(target["title"], attrs)
            price = _first_price(target["price"])
            bits = [f"{target['asin']} \"{_short(target['title'])}\" at {target['price']}"]
            if price is not None and budget < 1e6:
                bits.append(f"is within the {_money(budget)} budget" if price <= budget
                            else f"starts above the {_money(budget)} budget, but the listed range may include a lower price")
            if seen:
                bits.append(f"its title mentions {_join(seen)}")
            rest = [a for a in attrs if a not in seen]
            check = f"; I'll open it to confirm {_join(rest)}" if rest else "; I'll open it"
            if goal.get("goal_options"):
                check += " and choose the options"
            return Turn(", ".join(bits) + check + ".", f"click[{target['asin']}]")
        top = results[:2]
        seen_txt = _join([f"\"{_short(r['title'], 45)}\" ({r['price']})" for r in top]) or "no products"
        product = goal.get("query") or "the requested product"
        mem["pages"] += 1
        left = self.max_steps - len(state.steps) - (2 + len(goal.get("goal_options") or {}))
        if left < 2:  # no room to keep looking: buy the best visible product
            return self._fallback(goal, mem, results)
        pages = self.max_pages[min(mem["q"], len(self.max_pages) - 1)]
        if "Next >" in clickables and mem["pages"] < pages:
            return Turn(f"The results here, such as {seen_txt}, are not the {product} with {_join(attrs)} I want. "
                        f"I'll check the next page.", "click[Next >]")
        if mem["q"] + 1 < len(mem["queries"]) and left >= 3:
            mem["q"] += 1
            return Turn(f"None of these results ({seen_txt}, ...) fits {product} with {_join(attrs)}. "
                        f"I'll go back and search with different words.", "click[Back to Search]")
        return self._fallback(goal, mem, results)

    def _fallback(self, goal: dict[str, Any], mem: dict[str, Any], results: list[dict[str, Any]]) -> Turn:
        attrs = goal.get("attributes", [])
        budget = goal.get("price_upper", 1e6)
        product = goal.get("query", "")

        def fit(r: dict[str, Any]) -> float:
            price = _first_price(r["price"])
            in_budget = price is not None and price <= budget
            return (fuzz.token_set_ratio(product, r["title"]) / 100 + len(_attrs_in(r["title"], attrs)) + in_budget)

        if not results:
            return Turn("There are no results left to check, so I'll try another search.", "click[Back to Search]")
        best = max(results, key=fit)
        mem["chosen"] = best["asin"]
        seen = _attrs_in(best["title"], attrs)
        return Turn(f"I could not find an exact match. The closest is {best['asin']} \"{_short(best['title'])}\" "
                    f"at {best['price']}" + (f", whose title mentions {_join(seen)}" if seen else "")
                    + ". I'll open it.", f"click[{best['asin']}]")

    def _item(self, goal: dict[str, Any], mem: dict[str, Any], state: EpisodeState) -> Turn:
        clickables = state.info.get("clickables", [])
        selected = state.info.get("selected_options", {})
        url = state.info.get("url", "").upper()
        on_target = goal["asin"].upper() in url
        if not on_target and mem.get("chosen", "").upper() not in url:
            return Turn("This is not the product I meant to open; I'll go back to the results.", "click[< Prev]")
        # on the goal product, or on the closest match (fallback): choose every requested option offered
        labels = {_ws(c).casefold(): c for c in clickables}
        tried = mem.setdefault("tried", set())
        for name, value in (goal.get("goal_options") or {}).items():
            if _ws(selected.get(name, "")) == _ws(value) or (name, value) in tried:
                continue
            label = labels.get(_ws(value).casefold())
            if label is None:
                continue
            tried.add((name, value))
            done = [f"{k} {v}" for k, v in selected.items()]
            lead = f"{_join(done).capitalize()} {'is' if len(done) == 1 else 'are'} set. " if done else ""
            return Turn(f"{lead}The request asks for {name}: {value}, and this product offers it, so I select it.",
                        f"click[{label}]")
        return self._buy(goal, state, note="" if on_target else "It is the closest match I found.")

    def _buy(self, goal: dict[str, Any], state: EpisodeState, note: str = "") -> Turn:
        obs = state.observation
        m = re.search(r"^Price:\s*(.+)$", obs, re.M)
        price_txt = m.group(1).strip() if m else "the listed price"
        price = _first_price(price_txt)
        budget = goal.get("price_upper", 1e6)
        title = next((ln for ln in obs.splitlines() if ln and not ln.startswith(("[", "Price:", "Rating:"))
                      and not re.match(r"^\S+ \[", ln)), "")
        bits = []
        chosen = state.info.get("selected_options", {})
        if chosen:
            bits.append(f"The options are set ({_join([f'{k}: {v}' for k, v in chosen.items()])})")
        if price is not None and budget < 1e6:
            rel = "below" if price <= budget else "near"
            bits.append(f"the price {price_txt} is {rel} the {_money(budget)} limit")
        seen = _attrs_in(title, goal.get("attributes", []))
        if seen:
            bits.append(f"the title confirms {_join(seen)}")
        text = "; ".join(bits) if bits else "This product matches the request"
        text = text[0].upper() + text[1:] + ". " + (note + " " if note else "") + "I'll buy it."
        return Turn(text, "click[Buy Now]")


def make_expert(**kwargs) -> WebShopOracle:
    return WebShopOracle(**kwargs)
