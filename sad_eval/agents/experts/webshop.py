"""The WebShop oracle teacher: a scripted shopper that reasons only from what the pages show.

It reads the instruction as the search page shows it (the product request, the `name: value`
options, the `price lower than X dollars` budget) and nothing else: no goal ASIN, no hidden
attributes or category. It plays like a careful person: search with the request's words and the
option values, rank the listed results by how many of the request's words their titles share
and whether their price fits the budget, open the best one, check on the product page that it
offers every requested option at a price within budget (else go back and open the next best),
select the options, buy. Every product it clicks and every claim in its reasoning (titles,
prices, shared words, offered options, the budget) can be read off the instruction and the
pages seen so far (`tests/test_webshop_oracle.py` checks this on many episodes), so a student
can learn the same reading. It therefore does not always buy the goal product: where another
listed product fits the visible evidence as well, it may pick that one (docs/webshop.md gives
how often, and its score).

It reads the env's default `full` observation format (one item per line). Its spec's
`teacher_env_kwargs` are empty: it needs no privileged facts from the env.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from sad_eval.agents.base import EpisodeState, Turn

_ASIN_LINE = re.compile(r"^\[([A-Za-z0-9]{10})\]$")
_PRICE = re.compile(r"\$\s?([\d,]+(?:\.\d+)?)")
_PAGE_LINE = re.compile(r"^Page (\d+) \(Total results: (\d+)\)$", re.M)
_BUDGET = re.compile(r",? and price lower than ([\d.,]+) dollars\s*$")
_LEAD = re.compile(r"^\s*(find me|i need|i want|i am looking for|i'm looking for|looking for|get me|buy)\s+", re.I)
_OPTION_ROW = re.compile(r"^(.+?) ((?:\[\[?[^\[\]]*\]\]? ?)+)$")
_WORD = re.compile(r"[a-z0-9]+")
_OPTION_NAME = re.compile(r"[a-z][a-z0-9]*(?: [a-z0-9]+){0,3}")  # "color", "size", "flavor name", ...
_STOP = frozenset("a an the and or of for to in on at by with from me i my is are it its this that as "
                  "be can find need want looking get buy".split())


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


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _norm(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def content_words(text: str) -> list[str]:
    """A text's words for matching: lower-case, plural `s` folded, function words dropped."""
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        w = _norm(w)
        if len(w) > 1 and w not in _STOP and w not in out:
            out.append(w)
    return out


# ------------------------------------------------------------------ the instruction, as shown

@dataclass
class Request:
    text: str  # the instruction
    product: str  # the request without lead-in, options and budget
    options: dict[str, str] = field(default_factory=dict)  # name -> value, as the instruction lists them
    budget: float | None = None

    @property
    def words(self) -> list[str]:
        return content_words(self.product)


def parse_instruction(text: str) -> Request:
    """Split the shown instruction into request, `with name: value, and name: value` options and
    the `price lower than X dollars` budget (the synthetic instructions' wording)."""
    text = _ws(text)
    m = _BUDGET.search(text)
    budget = float(m.group(1).replace(",", "")) if m else None
    body = text[: m.start()] if m else text
    options: dict[str, str] = {}
    # the options clause is the last " with " whose rest reads "name: value, and name: value"
    for cut in reversed([i.start() for i in re.finditer(r" with ", body)]):
        pairs = [p.split(": ", 1) for p in body[cut + len(" with "):].split(", and ")]
        if all(len(p) == 2 and _OPTION_NAME.fullmatch(p[0]) for p in pairs):
            options = {k: v for k, v in pairs}
            body = body[:cut]
            break
    return Request(text, _LEAD.sub("", body).strip(), options, budget)


def queries(req: Request) -> list[str]:
    """Search queries in the order tried: the request's words with the option values, the
    request alone, then the whole instruction (less the price)."""
    cands = [f"{req.product} {' '.join(req.options.values())}", req.product,
             _LEAD.sub("", _BUDGET.sub("", req.text))]
    out: list[str] = []
    for q in cands:
        q = " ".join(re.sub(r"[,;:]", " ", q).lower().split())
        if q and q not in out:
            out.append(q)
    return out


# ------------------------------------------------------------------ the pages, as shown

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


def more_pages(observation: str) -> bool:
    m = _PAGE_LINE.search(observation)
    return bool(m) and int(m.group(1)) * 10 < int(m.group(2))


def parse_item(observation: str) -> dict[str, Any]:
    """Title, price text and offered option values (name -> values) of a product page."""
    options: dict[str, list[str]] = {}
    title, price = "", ""
    for line in observation.splitlines():
        line = line.strip()
        if not line or line.startswith("["):
            continue
        if line.startswith("Price:"):
            price = line[len("Price:"):].strip()
            continue
        if line.startswith("Rating:"):
            continue
        m = _OPTION_ROW.match(line)
        if m and not title:
            options[m.group(1)] = [v.strip("[] ") for v in re.findall(r"\[\[?[^\[\]]*\]\]?", m.group(2))]
            continue
        title = title or line
    return {"title": title, "price": price, "options": options}


def fit(req: Request, title: str, price_text: str) -> dict[str, Any]:
    """What a title and price show against the request: shared request words, budget."""
    have = set(content_words(title))
    shared = [w for w in req.words if w in have]
    price = _first_price(price_text)
    in_budget = req.budget is None or (price is not None and price <= req.budget)
    share = len(shared) / len(req.words) if req.words else 0.0
    return {"shared": shared, "share": share, "price": price, "in_budget": in_budget,
            "key": (share + 0.5 * in_budget, -0.0)}


def _offered(options: dict[str, list[str]], name: str, value: str) -> str | None:
    """The label of `value` among the page's values for option `name` (or any option row)."""
    want = _ws(value).casefold()
    rows = [options[name]] if name in options else list(options.values())
    for values in rows:
        for v in values:
            if _ws(v).casefold() == want:
                return v
    return None


class WebShopOracle:
    """Policy `oracle`; `max_pages`: result pages scanned for each query before trying the next."""

    name = "oracle"

    def __init__(self, max_pages: Sequence[int] = (2, 2, 1), max_steps: int = 15):
        self.max_pages = max_pages
        self.max_steps = max_steps  # the env's step cap: leave room to open, choose options, buy

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        return [self._turn(s) for s in states]

    # ------------------------------------------------------------------ one turn
    def _turn(self, state: EpisodeState) -> Turn:
        mem = state.memory
        if "req" not in mem:
            mem["req"] = parse_instruction(state.info.get("instruction") or state.task)
            mem.update(queries=queries(mem["req"]), q=0, pages=0, opened=[])
        page = state.info.get("page", "search")
        if page == "search":
            return self._search(mem)
        if page == "results":
            return self._results(mem, state)
        if page == "item":
            return self._item(mem, state)
        return Turn(f"This is the product's {page} page; I have what I need, so I go back to the product.",
                    "click[< Prev]")

    def _left(self, state: EpisodeState) -> int:
        return self.max_steps - len(state.steps)

    def _search(self, mem: dict[str, Any]) -> Turn:
        req: Request = mem["req"]
        q = mem["queries"][min(mem["q"], len(mem["queries"]) - 1)]
        mem["pages"] = 0
        parts = [f"The instruction asks for {req.product}"]
        if req.options:
            parts.append("with " + _join([f"{k}: {v}" for k, v in req.options.items()]))
        if req.budget is not None:
            parts.append(f"for less than {_money(req.budget)}")
        why = {0: "I'll search with the request's words and the option values; options are picked on the "
                  "product page.",
               1: "My first search listed nothing that fits, so I'll search with the request's words alone."
               }.get(mem["q"], "The earlier searches listed nothing that fits, so I'll search with the whole "
                               "instruction.")
        return Turn(" ".join(parts) + ". " + why, f"search[{q}]")

    def _describe(self, req: Request, r: dict[str, Any], f: dict[str, Any]) -> str:
        bits = [f"{r['asin']} \"{_short(r['title'])}\" at {r['price']}"]
        if req.budget is not None and f["price"] is not None:
            bits.append(f"is within the {_money(req.budget)} budget" if f["in_budget"]
                        else f"is above the {_money(req.budget)} budget")
        n = len(req.words)
        if f["shared"]:
            bits.append(f"its title has {len(f['shared'])} of the {n} request words ({_join(f['shared'][:8])})")
        else:
            bits.append(f"its title has none of the {n} request words")
        return ", ".join(bits)

    def _results(self, mem: dict[str, Any], state: EpisodeState) -> Turn:
        req: Request = mem["req"]
        listed = [r for r in parse_results(state.observation) if r["asin"] not in mem["opened"]]
        fits = {r["asin"]: fit(req, r["title"], r["price"]) for r in listed}
        # the search engine's order among the results within budget; the product page then checks
        # the options. Without options to check, the title's share of request words decides.
        cands = [r for r in listed if fits[r["asin"]]["in_budget"]]
        if not req.options:
            cands.sort(key=lambda r: -fits[r["asin"]]["share"])  # stable: ties keep the listed order
        left = self._left(state)
        need = 2 + len(req.options)  # open, choose each option, buy
        if cands:
            r = cands[0]
            mem["opened"].append(r["asin"])
            why = ("it is the first listed result within budget I have not opened" if req.options else
                   "its title shares the most request words among the results here within budget that I have "
                   "not opened")
            check = (f"I'll open it to see whether it offers {_join([f'{k}: {v}' for k, v in req.options.items()])}"
                     if req.options else "I'll open it to check it")
            lead = "I am running out of steps, so I take it. " if left < need else ""
            return Turn(f"{lead}{self._describe(req, r, fits[r['asin']])}; {why}. {check}.", f"click[{r['asin']}]")
        mem["pages"] += 1
        last_query = mem["q"] + 1 >= len(mem["queries"])
        pages = 5 if last_query else self.max_pages[min(mem["q"], len(self.max_pages) - 1)]
        summary = ("Every result on this page is above the budget or already checked" if listed or mem["opened"]
                   else "This page lists no products")
        if more_pages(state.observation) and mem["pages"] < pages and left >= need + 1:
            return Turn(summary + ". I'll check the next page.", "click[Next >]")
        if mem["q"] + 1 < len(mem["queries"]) and left >= need + 2:
            mem["q"] += 1
            return Turn(summary + ". I'll go back and search with other words.", "click[Back to Search]")
        if listed:
            r = max(listed, key=lambda r: fits[r["asin"]]["share"])
            mem["opened"].append(r["asin"])
            return Turn(f"No listed product fits the whole request; the closest is "
                        f"{self._describe(req, r, fits[r['asin']])}. I'll open it.", f"click[{r['asin']}]")
        return Turn("There are no results left to check, so I'll try another search.", "click[Back to Search]")

    def _item(self, mem: dict[str, Any], state: EpisodeState) -> Turn:
        req: Request = mem["req"]
        item = parse_item(state.observation)
        selected = {k: _ws(v) for k, v in state.info.get("selected_options", {}).items()}
        f = fit(req, item["title"], item["price"])
        missing = [(k, v) for k, v in req.options.items() if _offered(item["options"], k, v) is None]
        left = self._left(state)
        # can I afford to go back and open another result (back, open, options, buy)?
        retry = left >= 3 + len(req.options)  # back, open another, its options, buy
        if (missing or not f["in_budget"]) and retry:
            mem["retries"] = mem.get("retries", 0) + 1
            mem["tried"] = set()
            why = []
            if missing:
                why.append("it does not offer " + _join([f"{k}: {v}" for k, v in missing]))
            if not f["in_budget"]:
                why.append(f"its price {item['price']} is above the {_money(req.budget or 0)} budget")
            return Turn(f"This product does not fit: {_join(why)}. I'll go back to the results and open the next "
                        "best match.", "click[< Prev]")
        tried = mem.setdefault("tried", set())
        for name, value in req.options.items():
            label = _offered(item["options"], name, value)
            if label is None or selected.get(name) == _ws(label) or (name, value) in tried:
                continue
            tried.add((name, value))
            done = [f"{k} {v}" for k, v in selected.items()]
            lead = f"{_join(done).capitalize()} {'is' if len(done) == 1 else 'are'} set. " if done else ""
            return Turn(f"{lead}The instruction asks for {name}: {value}, and this product offers it, so I "
                        "select it.", f"click[{label}]")
        return self._buy(req, item, f, selected, missing)

    def _buy(self, req: Request, item: dict[str, Any], f: dict[str, Any], selected: dict[str, str],
             missing: list[tuple[str, str]]) -> Turn:
        bits = []
        if selected:
            bits.append(f"the options are set ({_join([f'{k}: {v}' for k, v in selected.items()])})")
        if f["price"] is not None and req.budget is not None:
            rel = "within" if f["in_budget"] else "above"
            bits.append(f"the price {item['price']} is {rel} the {_money(req.budget)} budget")
        if f["shared"]:
            bits.append(f"the title has {len(f['shared'])} of the {len(req.words)} request words")
        text = "; ".join(bits) if bits else "this product is the best match I found"
        text = text[0].upper() + text[1:] + ". "
        if missing:
            text += ("It does not offer " + _join([f"{k}: {v}" for k, v in missing])
                     + ", but it is the closest match I have steps left for. ")
        return Turn(text + "I'll buy it.", "click[Buy Now]")


def make_expert(**kwargs) -> WebShopOracle:
    return WebShopOracle(**kwargs)


# ---------------------------------------------------------------- few-shot exemplars (`--exemplars K`)

WEBSHOP_VERSION = 1


def teacher_exemplars(k: int, data_root=None, max_steps: int = 15) -> list[str]:
    """The WebShop oracle's first ``k`` won train episodes (of at most ``max_steps`` turns), in task
    order, as plain transcripts; cached in ``cache_root()/exemplars/webshop.json``."""
    from sad_eval.paths import cache_root
    from sad_eval.segment import linearize

    path = cache_root() / "exemplars" / "webshop.json"
    key = {"version": WEBSHOP_VERSION, "max_steps": max_steps}
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key and len(cached["exemplars"]) >= k:
                return list(cached["exemplars"][:k])
        except (ValueError, KeyError):
            pass
    from sad_eval.agents.episode import run_episode
    from sad_eval.agents.experts import expert_env_kwargs, make_expert
    from sad_eval.envs import make_env
    from sad_eval.errors import SadEvalError

    env = make_env("webshop", split="train", data_root=data_root, **expert_env_kwargs("webshop"))
    oracle = make_expert("webshop")
    chosen: list[tuple[str, str]] = []
    try:
        for tid in env.unwrapped.task_ids:
            if len(chosen) >= k:
                break
            ep = run_episode(env, oracle, "webshop", tid, split="train")
            if ep.success and len(ep.steps) <= max_steps:
                chosen.append((tid, ep.prompt.strip() + "\n" + linearize(ep.steps, "webshop")))
    finally:
        env.close()
    if len(chosen) < k:
        raise SadEvalError(f"--exemplars {k}: the WebShop oracle won only {len(chosen)} train episodes")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": key, "task_ids": [t for t, _ in chosen],
                               "exemplars": [x for _, x in chosen]}, ensure_ascii=False, indent=1))
    tmp.replace(path)
    return [x for _, x in chosen]
