"""The HotPotQA oracle teacher: a scripted ReAct agent that knows the goal but reasons only from
what the env has shown.

Privileged input (``info["privileged"]``, see ``sad_eval/envs/hotpotqa.py``) decides *what* to
look for: the gold pages, their order (bridge: the page the question talks about, then the page
holding the answer; comparison: the order the question names them), the sentence each page must
show, and the gold answer. *How* to get there comes only from the episode's observations, as a
real agent must:

- a page is searched by a name the question or an earlier observation showed (any case or
  accents, as the env's exact search folds them); when no shown name hits it exactly, by a shown
  phrase whose failed search lists the page in ``Similar:``, and then by the title from that list;
- a lookup keyword is a word the episode has shown that occurs in the needed sentence (question
  words first), used when that sentence is not among the first 5;
- when neither reaches a gold page within the step cap, the oracle says so and answers from what it
  found (the shown span closest to the gold answer).

Every search target, lookup keyword, quote and name in its reasoning therefore occurs in the
question or an earlier observation (tests/test_hotpotqa.py checks it over many episodes).

With ``grounded=True`` (default) it only answers the gold string when an observation showed it (or
a yes/no comparison whose facts it has seen); otherwise the closest shown span. ``grounded=False``
always answers the gold string (a bridge) or the gold yes/no.

``build_exemplars`` turns oracle episodes on ``train`` into few-shot transcripts; ``react_exemplars``
returns ReAct's own ``webthink_simple6`` prompt text from the data dir.
"""

from __future__ import annotations

import ast
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rapidfuzz import fuzz

from sad_eval.agents.base import EpisodeState, Turn
from sad_eval.errors import SadEvalError
from sad_eval.paths import cache_root

EXEMPLAR_VERSION = 2  # 2: the observable oracle
QUOTE_CHARS = 260
_CAP_PHRASE = re.compile(r"(?:[A-Z0-9][\w'’.\-]*)(?:\s+(?:of|the|de|and|for|in|on|von|van|la|le|du|&)?\s*[A-Z0-9][\w'’.\-]*)*")
_WORDS = re.compile(r"[\w'’\-]+")
_STOP = frozenset("the a an of and or in on at to for by with from as is was are were be been this that it its "
                  "he she they his her their which who whom what when where also has had have".split())


def _norm(s: str) -> str:
    from sad_eval.envs.hotpotqa import normalize_answer

    return normalize_answer(s)


_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b")
_NON_WORD = re.compile(r"[^\w\s]")


def _loose(s: str) -> str:
    """Answer normalization that also splits on any non-word character (dashes, quotes) and drops
    possessives, so "Nelson Rockefeller's" and "children—nine girls" contain their names."""
    return _norm(_NON_WORD.sub(" ", _POSSESSIVE.sub("", s)))


def _contains(text: str, needle: str) -> bool:
    """Whole-word containment of ``needle`` in ``text`` (loose normalization)."""
    n = _loose(needle)
    return bool(n) and f" {n} " in f" {_loose(text)} "


def _base(title: str) -> str:
    return re.sub(r"\s*\([^()]*\)\s*$", "", title).strip() or title


def _forms(title: str) -> list[str]:
    """How a page's entity may be named in running text: its base title, without a leading "The",
    or (for a multi-word name) its last word, e.g. "Borodin" for "Alexander Borodin"."""
    base = _base(title)
    forms = [base]
    if base.lower().startswith("the "):
        forms.append(base[4:])
    words = base.split()
    if len(words) >= 2 and len(words[-1]) >= 4 and words[-1][:1].isupper():
        forms.append(words[-1])
    return list(dict.fromkeys(forms))


def _names(text: str, title: str, strong: bool = False) -> bool:
    """Whether ``text`` names the entity of page ``title`` (``strong``: by its base title)."""
    forms = _forms(title)[:1] if strong else _forms(title)
    return any(_contains(text, f) for f in forms)


def _page(title: str, start: bool = False) -> str:
    """'the X page', or 'X page' when the title starts with The."""
    name = f"{title} page" if title.lower().startswith("the ") else f"the {title} page"
    return name[0].upper() + name[1:] if start else name


_MARKER = re.compile(r"(?<!\S)(Reasoning|Thought|Action|Answer|Observation):")


def _quote(sentence: str, focus: str | None = None, limit: int = QUOTE_CHARS) -> str:
    """The sentence, or a window of it around ``focus`` when it is long. A transcript marker inside
    it (a title like "Healthy Food For Thought: ...") loses its colon, so segmentation is unchanged."""
    s = _MARKER.sub(r"\1 -", " ".join(sentence.split()))
    if len(s) <= limit:
        return s
    at = s.lower().find(focus.lower()) if focus else -1
    start = max(0, min(at - limit // 3, len(s) - limit)) if at >= 0 else 0
    cut = s[start:start + limit]
    if start > 0:
        cut = "..." + cut[cut.find(" ") + 1:]
    if start + limit < len(s):
        cut = cut[: cut.rfind(" ")] + "..."
    return cut


# ------------------------------------------------------------------ planning

@dataclass
class Hop:
    title: str
    target: int  # index of the sentence this hop must show (store sentence list)
    sentences: list[str] = field(default_factory=list)
    visible: bool = True  # the target is among the sentences a search shows

    @property
    def target_text(self) -> str:
        return self.sentences[self.target].strip() if 0 <= self.target < len(self.sentences) else ""


@dataclass
class Plan:
    kind: str  # bridge | yesno | choice
    hops: list[Hop]
    answer: str
    question: str


def _visible(sentences: list[str], n: int) -> set[int]:
    return set([i for i, s in enumerate(sentences) if s.strip()][:n])


def _map_support(sentences: list[str], text: str | None) -> int | None:
    """Index in the store's sentence list of a supporting sentence given by its text."""
    if not text:
        return None
    t = " ".join(text.split())
    for i, s in enumerate(sentences):
        if " ".join(s.split()) == t:
            return i
    best = max(range(len(sentences)), key=lambda i: fuzz.ratio(sentences[i], t), default=None)
    if best is not None and fuzz.ratio(sentences[best], t) >= 80:
        return best
    return None


def make_plan(pv: dict[str, Any]) -> Plan:
    """Which pages matter, in which order, and which sentence of each: from the privileged facts.

    This only decides *what to look for*; how to reach it (search targets, lookup keywords) is
    decided turn by turn from what the episode has shown (:class:`HotPotQAOracle`)."""
    pages: dict[str, list[str]] = pv["pages"]
    titles = [t for t in pv["gold_titles"] if pages.get(t)] or list(pv["gold_titles"])
    answer, question = pv["answer"], pv["question"]
    qtype = pv.get("type") or ("comparison" if _norm(answer) in ("yes", "no") else "bridge")
    n_vis = int(pv.get("search_sentences", 5))
    support: dict[str, list[int]] = {}
    for title, idx, text in pv["support"]:
        i = _map_support(pages.get(title, []), text)
        if i is not None:
            support.setdefault(title, []).append(i)
    text_of = {t: " ".join(pages.get(t, [])) for t in titles}
    yesno = _norm(answer) in ("yes", "no")

    def ans_in(t: str) -> bool:
        return not yesno and _contains(text_of[t], answer)

    def mentions(a: str, b: str) -> bool:
        return _names(text_of[a], b)

    def in_question(t: str) -> bool:
        return _contains(question, _base(t))

    if len(titles) == 2:
        a, b = titles
        if qtype == "comparison":
            qa, qb = _norm(question).find(_norm(_base(a))), _norm(question).find(_norm(_base(b)))
            if qa >= 0 and qb >= 0 and qb < qa:
                titles = [b, a]
        else:
            def score(x: str, y: str) -> int:
                return (3 * (ans_in(y) and not ans_in(x)) + mentions(x, y) - mentions(y, x)
                        + in_question(x) - in_question(y))
            if score(b, a) > score(a, b):
                titles = [b, a]

    kind = "bridge" if qtype != "comparison" else ("yesno" if yesno else "choice")
    hops: list[Hop] = []
    for j, t in enumerate(titles):
        sents = pages.get(t, [])
        sup = [i for i in support.get(t, []) if 0 <= i < len(sents)]
        last = j == len(titles) - 1
        nxt = titles[j + 1] if not last else None
        vis = _visible(sents, n_vis)
        target: int | None = None
        if kind == "bridge" and last and not yesno:
            target = next((i for i in sup if _contains(sents[i], answer)), None)
            with_ans = [i for i, s in enumerate(sents) if _contains(s, answer)]
            if target is None or (target not in vis and any(i in vis for i in with_ans)):
                target = next((i for i in with_ans if i in vis), with_ans[0] if with_ans else target)
        elif kind == "bridge" and nxt:
            for strong in (True, False):
                naming = [i for i, s in enumerate(sents) if _names(s, nxt, strong)]
                target = next((i for i in sup if i in naming), None)
                if target is None and naming:
                    target = next((i for i in naming if i in vis), naming[0])
                if target is not None:
                    break
        elif kind == "choice":
            target = next((i for i in sup if _contains(sents[i], answer)), None)
        if target is None:
            target = sup[0] if sup else next((i for i, s in enumerate(sents) if s.strip()), 0)
        hops.append(Hop(t, target, sentences=sents, visible=not sents or target in vis))
    return Plan(kind, hops, answer, question)


def _lookup_cost(sentences: list[str], keyword: str, target: int) -> int | None:
    """How many lookups of ``keyword`` (case-insensitive substring, as the env does) reach ``target``."""
    k = keyword.lower()
    n = 0
    for i, s in enumerate(sentences):
        if s.strip() and k in s.lower():
            n += 1
            if i == target:
                return n
    return None


# ------------------------------------------------------------------ what the episode has shown

_EDGE = "\"'“”‘’,.;:!?[]"
_RESULT = re.compile(r"^\(Result (\d+) / (\d+)\) (.*)$", re.S)
_MISS = re.compile(r"^Could not find (.*)\. Similar: (\[.*\])\.$", re.S)


def _fold(text: str) -> str:
    from sad_eval.envs.wiki_store import fold_title

    return fold_title(text)


def _observed_in(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words, ignoring case, accents and spacing."""
    f = _fold(phrase)
    return bool(f) and re.search(r"(?<!\w)" + re.escape(f) + r"(?!\w)", _fold(text)) is not None


@dataclass
class Shown:
    """One observation: where it came from and what it showed."""

    text: str
    name: str  # how reasoning refers to its source: "the question", "the X page", ...
    kind: str  # question | page | lookup | similar | other
    query: str = ""  # the search query (page/similar) or the current page's query (lookup)
    hop: int | None = None  # the plan hop whose page this is
    sentences: list[str] = field(default_factory=list)  # page sentences shown (page/lookup)
    similar: list[str] = field(default_factory=list)


def _words(text: str) -> list[str]:
    return [w.strip(_EDGE + "()") for w in text.split()]


def _spans(text: str, max_words: int = 6) -> list[str]:
    """Substrings of ``text`` of up to ``max_words`` words that start and end with a content word
    (edge punctuation trimmed), as typed in the text."""
    toks = [(m.start(), m.end(), m.group(0).strip(_EDGE + "()")) for m in re.finditer(r"\S+", text)]
    out = []
    for i in range(len(toks)):
        for k in range(i, min(i + max_words, len(toks))):
            first, last = toks[i][2], toks[k][2]
            if not first or not last or first.lower() in _STOP or last.lower() in _STOP:
                continue
            span = text[toks[i][0]:toks[k][1]].strip(_EDGE)
            if span.count("(") != span.count(")"):
                span = span.strip(_EDGE + "()")
            if span:
                out.append(span)
    return out


def _sentence(text: str) -> str:
    """``text`` ended by one full stop (answers like "Las Vegas Sands company." bring their own)."""
    return text if text.endswith((".", "!", "?")) else text + "."


def _title_words(title: str) -> set[str]:
    return {w for w in (_fold(x) for x in _words(_base(title))) if len(w) >= 3 and w not in _STOP}


def _name_like(span: str) -> bool:
    """Every content word is capitalized or a number ("Year of the Four Emperors")."""
    words = [w for w in _words(span) if w and w.lower() not in _STOP]
    return bool(words) and all(w[:1].isupper() or w[:1].isdigit() for w in words)


# ------------------------------------------------------------------ the policy

class HotPotQAOracle:
    """Scripted ReAct teacher for HotPotQA (``name="oracle"``); see the module docstring."""

    name = "oracle"

    def __init__(self, grounded: bool = True, max_steps: int | None = None):
        self.grounded = grounded
        self.max_steps = max_steps  # None: the env's cap (privileged["max_steps"])

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        return [self._act(s) for s in states]

    # --- memory: the plan, and the episode's observations read back
    def _memory(self, state: EpisodeState, pv: dict[str, Any]) -> dict[str, Any]:
        mem = state.memory
        if mem.get("task_id") != state.task_id or "plan" not in mem:
            from sad_eval.envs import wiki_store

            mem.clear()
            mem["task_id"] = state.task_id
            mem["plan"] = make_plan(pv)
            mem["store"] = wiki_store.load_store(Path(pv["data_root"])) if pv.get("data_root") else None
            mem["routes"] = {}
        plan: Plan = mem["plan"]
        n_vis = int(pv.get("search_sentences", 5))
        shown = [Shown(pv["question"], "the question", "question")]
        page: tuple[int | None, str] | None = None  # (hop, query) of the current page
        lk: tuple[str | None, int] = (None, 0)  # the env's lookup state: keyword as typed, results read
        for step in state.steps:
            m = re.match(r"^\s*(search|lookup|finish|think)\s*\[(.*)\]\s*$", step.action or "", re.S | re.I)
            verb, arg = (m.group(1).lower(), m.group(2)) if m else ("", "")
            obs = step.observation or ""
            if verb == "search":
                miss = _MISS.match(obs.strip())
                if miss:
                    try:
                        sim = [str(t) for t in ast.literal_eval(miss.group(2))]
                    except (ValueError, SyntaxError):
                        sim = []
                    shown.append(Shown(obs, f"the search for {arg.strip()}", "similar", arg.strip(), similar=sim))
                    continue
                hop = self._page_hop(plan, obs, n_vis)
                sents = [s.strip() for s in plan.hops[hop].sentences if s.strip()][:n_vis] if hop is not None else []
                page, lk = (hop, arg.strip()), (None, 0)
                shown.append(Shown(obs, _page(arg.strip()), "page", arg.strip(), hop, sents))
            elif verb == "lookup":
                lk = (arg, lk[1] + 1) if arg == lk[0] else (arg, 1)
                res = _RESULT.match(obs.strip())
                name = _page(page[1]) if page else "the lookup"
                shown.append(Shown(obs, name, "lookup", page[1] if page else "", page[0] if page else None,
                                   [res.group(3).strip()] if res else []))
            else:
                shown.append(Shown(obs, "", "other"))
        mem["shown"], mem["page"], mem["lk"] = shown, page, lk
        return mem

    @staticmethod
    def _page_hop(plan: Plan, obs: str, n_vis: int) -> int | None:
        for j, h in enumerate(plan.hops):
            first = " ".join([s.strip() for s in h.sentences if s.strip()][:n_vis])
            if first and obs.strip() == first:
                return j
        return None

    # --- routes to a page through what was shown
    def _route(self, mem: dict, j: int) -> tuple[str, int, Shown] | None:
        """How hop ``j``'s page can be reached from what was shown: ``(query, searches, source)``.
        One search when its title was shown (in any case or accents, or in a Similar list); two
        when a shown phrase misses and its Similar list offers the title; None otherwise."""
        key = (j, len(mem["shown"]))
        if key not in mem["routes"]:
            mem["routes"][key] = self._find_route(mem, j)
        return mem["routes"][key]

    def _find_route(self, mem: dict, j: int) -> tuple[str, int, Shown] | None:
        plan, store, shown = mem["plan"], mem["store"], mem["shown"]
        title = plan.hops[j].title
        searched = {s.query for s in shown if s.kind in ("page", "similar")}
        for s in shown:
            if (title in s.similar or (s.kind != "similar" and _observed_in(s.text, title))) and title not in searched:
                return title, 1, s
        if store is None:
            return None
        title_words = _title_words(title)
        best: tuple[tuple, str, Shown] | None = None
        for si, s in enumerate(shown):
            if s.kind not in ("question", "page", "lookup"):
                continue
            for tier, q in self._phrases(s, title, question=si == 0):
                if q in searched or store.resolve(q) is not None:
                    continue
                sim = store.similar(q, 5)
                if title in sim:  # most title words, name-like, longest: the most specific phrase
                    shared = len(title_words & {_fold(w) for w in _words(q)})
                    key = (tier, -shared, not _name_like(q), -len(q.split()), sim.index(title), si, q)
                    if best is None or key < best[0]:
                        best = (key, q, s)
        return (best[1], 2, best[2]) if best else None

    @staticmethod
    def _phrases(s: Shown, title: str, question: bool, max_words: int = 6) -> list[tuple[int, str]]:
        """Phrases of a shown text to try as a search, by tier: 0 the page's own names (base title,
        without a leading The, last name) where shown; 1 spans sharing a word with the title;
        2 name-like spans; 3 (the question only) any span that starts and ends with a content word."""
        out = [(0, f) for f in _forms(title) if _observed_in(s.text, f)]
        title_words = _title_words(title)
        for span in _spans(s.text, max_words):
            if title_words & {_fold(w) for w in _words(span)}:
                out.append((1, span))
            elif _name_like(span):
                out.append((2, span))
            elif question:
                out.append((3, span))
        seen: set[str] = set()
        return [(t, q) for t, q in out if not (q in seen or seen.add(q))]

    # --- lookups on the current page
    def _satisfied(self, mem: dict, j: int) -> bool:
        """Whether the page of hop ``j`` has shown what the plan needs from it."""
        plan, shown = mem["plan"], mem["shown"]
        hop = plan.hops[j]
        if self._seen_sentence(mem, hop.target_text):
            return True
        if plan.kind == "bridge" and j != len(plan.hops) - 1:
            return all(self._route(mem, i) is not None for i in self._unreached(mem))
        if plan.kind == "bridge":
            return self._answer_seen(mem)
        return False

    def _lookup_choice(self, mem: dict, j: int, budget: int) -> tuple[str, int] | None:
        """A keyword the episode has shown (question words first) that reaches hop ``j``'s target
        sentence within ``budget`` lookups: ``(keyword, lookups)``."""
        if budget < 1:
            return None
        hop, shown = mem["plan"].hops[j], mem["shown"]
        target = hop.target_text.lower()
        kw_now, read = mem["lk"]
        cands: list[str] = []
        for s in shown:
            cands += [w for w in _words(s.text) if (len(w) >= 4 or w.isdigit()) and w.lower() not in _STOP]
        best: tuple[int, int, str] | None = None
        for rank, kw in enumerate(dict.fromkeys(cands)):
            if kw.lower() not in target:
                continue
            pos = _lookup_cost(hop.sentences, kw, hop.target)
            if pos is None:
                continue
            cost = pos - read if kw == kw_now else pos
            if 1 <= cost <= budget and (best is None or (cost, rank) < best[:2]):
                best = (cost, rank, kw)
        return (best[2], best[0]) if best else None

    # --- helpers over what was shown
    def _unreached(self, mem: dict) -> list[int]:
        reached = {s.hop for s in mem["shown"] if s.kind == "page" and s.hop is not None}
        return [j for j in range(len(mem["plan"].hops)) if j not in reached]

    @staticmethod
    def _seen_sentence(mem: dict, sentence: str) -> bool:
        t = " ".join(sentence.split())
        return bool(t) and any(t in " ".join(x.split()) for s in mem["shown"] for x in s.sentences)

    def _answer_seen(self, mem: dict) -> bool:
        """The gold answer was shown on a page reached, or is the name that reached a gold page."""
        gold = mem["plan"].answer
        text = " ".join(s.text for s in mem["shown"] if s.kind in ("page", "lookup"))
        reached = [s.query for s in mem["shown"] if s.kind == "page" and s.hop is not None]
        return _contains(text, gold) or _variant_in(text, gold) or any(_fold(q) == _fold(gold) for q in reached)

    @staticmethod
    def _evidence(mem: dict, phrase: str | None, hop: int | None = None) -> tuple[Shown, str] | None:
        """The latest shown page sentence that contains ``phrase`` (or, with ``hop``, the hop's target)."""
        for s in reversed(mem["shown"]):
            for x in s.sentences:
                if hop is not None and s.hop == hop and " ".join(mem["plan"].hops[hop].target_text.split()) in " ".join(x.split()):
                    return s, x
                if phrase and hop is None and (_observed_in(x, phrase) or _contains(x, phrase)):
                    return s, x
        return None

    # --- one turn
    def _act(self, state: EpisodeState) -> Turn:
        pv = state.info.get("privileged")
        if not pv:
            raise SadEvalError("the HotPotQA oracle needs info['privileged'] (build the env with privileged=True)")
        mem = self._memory(state, pv)
        from sad_eval.envs.hotpotqa import DEFAULT_MAX_STEPS

        cap = int(pv.get("max_steps", self.max_steps or DEFAULT_MAX_STEPS))
        if self.max_steps:
            cap = min(cap, self.max_steps)
        left = cap - len(state.steps)  # actions left, this one included
        decision = self._decide(mem, left)
        reflect, quoted = self._reflect(mem, decision)
        if decision[0] == "search":
            _, j, (q, _, src) = decision
            text, action = self._why_search(mem, j, q, src), f"search[{q}]"
        elif decision[0] == "lookup":
            _, j, (kw, _) = decision
            text, action = self._why_lookup(mem, j, kw), f"lookup[{kw}]"
        else:
            answer, text = self._answer(mem, quoted)
            action = f"finish[{answer}]"
        text = " ".join(f"{reflect} {text}".split()).replace('.".', '."')
        return Turn(text, action)

    def _decide(self, mem: dict, left: int) -> tuple:
        if left <= 1:
            return ("finish",)
        unreached = self._unreached(mem)
        cur = mem["page"][0] if mem["page"] else None
        if cur is not None and not self._satisfied(mem, cur):
            choice = self._lookup_choice(mem, cur, left - 1 - len(unreached))
            if choice:
                return ("lookup", cur, choice)
        for j in unreached:
            route = self._route(mem, j)
            if route and route[1] <= left - 1:
                return ("search", j, route)
        question = mem["shown"][0]
        if not any(s.kind in ("page", "similar") for s in mem["shown"]):  # no shown name reaches a
            names = [sp for sp in _spans(question.text) if _name_like(sp)]  # gold page: still look
            if names:
                return ("search", None, (max(names, key=lambda sp: len(sp.split())), 1, question))
        return ("finish",)

    # --- reasoning text (every name and quote in it was shown earlier in the episode)
    def _reflect(self, mem: dict, decision: tuple) -> tuple[str, str | None]:
        """What the last observation showed that the next action uses; and the sentence quoted."""
        shown, plan = mem["shown"], mem["plan"]
        last = shown[-1]
        if last.kind == "similar":
            text = f"There is no page named {last.query}."
            if decision[0] == "search" and decision[2][0] in last.similar:
                text += f" Its Similar list offers {decision[2][0]}."
            return text, None
        if last.kind not in ("page", "lookup"):
            return "", None
        focus = None
        if decision[0] == "search" and decision[2][2] is last:
            focus = decision[2][0]
        elif decision[0] == "finish" and plan.kind == "bridge":
            focus = plan.answer
        sentence = None
        for x in last.sentences:
            if focus and (_observed_in(x, focus) or _contains(x, focus)):
                sentence = x
                break
        if sentence is None and last.hop is not None:
            t = " ".join(plan.hops[last.hop].target_text.split())
            sentence = next((x for x in last.sentences if t and t in " ".join(x.split())), None)
        if sentence:
            return f'{_page(last.query, True)} says: "{_quote(sentence, focus)}".', sentence
        if last.kind == "lookup":
            if last.text.strip().startswith("No more results"):
                return "The lookup found nothing more.", None
            return "That sentence is not the one I need.", None
        return "", None

    def _why_search(self, mem: dict, j: int, q: str, src: Shown) -> str:
        plan, shown = mem["plan"], mem["shown"]
        first = not any(s.kind in ("page", "similar") for s in shown)
        if src.kind == "similar":
            if src is shown[-1]:
                return f"I will search {q}."
            return f"The Similar list of {src.name} offered {q}, so I will search it."
        if plan.kind != "bridge":
            if first:
                what = ("whether the statement holds for both" if plan.kind == "yesno"
                        else "which of them fits the question" if _contains(plan.question, plan.answer)
                        else "what the question asks about both")
                return (f"The question compares two entities. I need to search each of them and "
                        f"check {what}, starting with {q}.")
            return f"Now I need the same information about {q}, so I will search it."
        if src.kind == "question":
            if first and len(plan.hops) == 1:
                return f"I need to search {q} and find the answer to the question there."
            if first:
                return (f"I need to search {q} first and find the entity it leads to; the answer "
                        f"should be on that entity's page.")
            return f"The question also names {q}, so I will search it."
        if src is shown[-1]:
            return f"So it leads to {q}. I need to search {q} and find the answer there."
        return f"{src.name[0].upper() + src.name[1:]} names {q}, so I will search it."

    def _why_lookup(self, mem: dict, j: int, kw: str) -> str:
        plan = mem["plan"]
        if mem["lk"][0] == kw:
            return f'I will look up "{kw}" again for the next match.'
        if plan.kind == "bridge":
            need = "the answer to the question" if j == len(plan.hops) - 1 else "where it leads"
        else:
            need = "the fact the question compares"
        return f'I will look up "{kw}" on {_page(mem["page"][1])} to find {need}.'

    # --- the answer
    def _answer(self, mem: dict, quoted: str | None) -> tuple[str, str]:
        plan, shown = mem["plan"], mem["shown"]
        gold = plan.answer
        facts, missing = [], []
        for j, hop in enumerate(plan.hops if plan.kind != "bridge" else []):
            ev = self._evidence(mem, None, hop=j)
            if ev is None:
                missing.append(j)
            elif ev[1] != quoted:
                facts.append(f'{_page(ev[0].query, True)} says: "{_quote(ev[1])}".')
        said = " ".join(facts)
        # a comparison answered by one of the names it compares (or yes/no), from the facts of both
        if plan.kind == "yesno" or (plan.kind == "choice" and _contains(plan.question, gold)):
            answer = gold
            if self.grounded and missing:  # no evidence for the choice: a guess that does not use the gold
                answer = "yes" if plan.kind == "yesno" else (mem["page"][1] if mem["page"] else gold)
                return answer, (f"{said} I could not find what the question compares for every entity, so "
                                f"this is a guess: {answer}.")
            if plan.kind == "yesno":
                return answer, _sentence(f"{said} Comparing them on what the question asks, the answer is {answer}")
            return answer, _sentence(f"{said} Comparing them, {answer} is the one that fits the question, "
                                     f"so the answer is {answer}")
        # an answer stated on a page: a bridge, or a comparison whose answer is what both share
        if not self.grounded or self._answer_seen(mem):
            ev = None if quoted and (_contains(quoted, gold) or _variant_in(quoted, gold)) else self._evidence(mem, gold)
            if ev and ev[1] not in " ".join(facts):
                said += f' {_page(ev[0].query, True)} said: "{_quote(ev[1], gold)}".'
            return gold, _sentence(f"{said} So the answer is {gold}".strip())
        text = " ".join(s.text for s in shown if s.kind in ("page", "lookup"))
        guess = best_span(text, gold) or ""
        routes = [r for j in self._unreached(mem) if (r := self._route(mem, j))]
        why = (f"I have no steps left to search {routes[0][0]}" if routes
               else "None of the names I have seen reaches a page that states the answer")
        if not guess:  # an answer line is still needed: say what is unknown
            return "unknown", f"{said} {why}, so I do not know it.".strip()
        return guess, f"{said} {why}; the closest I found is {guess}, so I will answer that.".strip()


def _variant_in(text: str, gold: str) -> bool:
    """The gold answer appears as a close variant ("South Korea" in "South Korean")."""
    g = _loose(gold)
    return len(g) >= 4 and fuzz.partial_ratio(g, _loose(text)) >= 90


def best_span(text: str, gold: str, extra: int = 4) -> str | None:
    """The word span of ``text`` with the highest token F1 against ``gold`` (None if all score 0)."""
    from sad_eval.envs.hotpotqa import f1_score

    words = text.split()
    n = max(1, len(_norm(gold).split()))
    best, best_key = None, (0.0, 0)
    for i in range(len(words)):
        for L in range(1, min(n + extra, len(words) - i) + 1):
            span = " ".join(words[i:i + L]).strip(".,;:!?\"'()[]")
            key = (round(f1_score(span, gold), 9), -len(span.split()))
            if key[0] > 0 and key > best_key:
                best, best_key = span, key
    return best


def make_expert(**kwargs) -> HotPotQAOracle:
    """The HotPotQA teacher (``--agent expert`` / ``--agent oracle``)."""
    return HotPotQAOracle(**kwargs)


# ------------------------------------------------------------------ few-shot exemplars

EXEMPLAR_KINDS = ("bridge-lookup", "yesno", "bridge", "choice")


def _kind_of(plan: Plan) -> str:
    if plan.kind == "bridge":
        return "bridge-lookup" if not all(h.visible for h in plan.hops) else "bridge"
    return plan.kind


def transcript(task: str, steps: Sequence[Any]) -> str:
    """A plain few-shot transcript: the question, then Reasoning/Action/Observation lines (the final
    'Episode finished.' observation left out)."""
    from sad_eval.segment import linearize

    steps = list(steps)
    body = linearize(steps[:-1], "hotpotqa") + linearize(steps[-1:], "hotpotqa", observations=False) if steps else ""
    return f"{task.strip()}\n{body}".strip() + "\n"


def build_exemplars(data_root: Path | str | None = None, k: int = 6, refresh: bool = False,
                    cache_path: Path | str | None = None) -> list[str]:
    """``k`` oracle transcripts on ``train`` (a fixed, type-balanced choice), cached in
    ``cache_root()/exemplars/hotpotqa.json`` (or ``cache_path``); rebuilt when k, the data file or
    this format changes."""
    from sad_eval.envs.hotpotqa import HotPotQAEnv
    from sad_eval.agents.episode import run_episode

    env = HotPotQAEnv(split="train", data_root=data_root, privileged=True)
    key = {"version": EXEMPLAR_VERSION, "k": k, "source_sha256": env.store.meta.get("sha256")}
    path = Path(cache_path) if cache_path else cache_root() / "exemplars" / "hotpotqa.json"
    if path.is_file() and not refresh:
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return list(cached["exemplars"])
        except (ValueError, KeyError):
            pass
    ids = env.task_ids
    random.Random(0).shuffle(ids)
    want = [EXEMPLAR_KINDS[i % len(EXEMPLAR_KINDS)] for i in range(k)]
    chosen: list[tuple[str, str]] = []
    oracle = HotPotQAOracle()
    for tid in ids:
        if not want:
            break
        _, info = env.reset(options={"task_id": tid})
        kind = _kind_of(make_plan(info["privileged"]))
        if kind not in want:
            continue
        ep = run_episode(env, oracle, "hotpotqa", tid, split="train")
        if not ep.success or len(ep.steps) > 6:
            continue
        want.remove(kind)
        chosen.append((tid, transcript(ep.prompt, ep.steps)))
    exemplars = [t for _, t in chosen]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": key, "task_ids": [t for t, _ in chosen], "exemplars": exemplars},
                              ensure_ascii=False, indent=1))
    tmp.replace(path)
    return exemplars


def react_exemplars(data_root: Path | str | None = None) -> str:
    """ReAct's own six HotPotQA exemplars (``webthink_simple6``) from the installed data."""
    from sad_eval.data import require

    path = require("react/prompts_naive.json", Path(data_root) if data_root else None)
    return json.loads(path.read_text())["webthink_simple6"]


# ---------------------------------------------------------------- exemplars, as the env's spec names them

def teacher_exemplars(k: int, data_root: Path | str | None = None) -> list[str]:
    """`--exemplars K`: K type-balanced oracle transcripts on train."""
    return list(build_exemplars(data_root, k=k))


def react_prompt_exemplars(prompts: dict[str, str], key: str) -> list[str]:
    """`--exemplars react[:KEY]`: ReAct's HotPotQA prompt (default ``webthink_simple6``) converted."""
    return convert_react_hotpotqa(prompts[key or "webthink_simple6"])


_REACT_LINE = re.compile(r"^(Thought|Action|Observation) \d+: ?(.*)$")
_REACT_ACTION = re.compile(r"^(Search|Lookup|Finish)\[(.*)\]$")


def convert_react_hotpotqa(text: str) -> list[str]:
    """ReAct's HotPotQA prompt (``Question:``/``Thought i:``/``Action i: Search[x]``/``Observation i:``
    blocks) as our transcripts: Thought -> Reasoning, ``Search[x]`` -> ``search[x]``,
    ``Lookup[x]`` -> ``lookup[x]``, ``Finish[x]`` -> the ``Answer: x`` line."""
    out = []
    for block in re.split(r"\n(?=Question:)", text.strip()):
        lines = block.strip().split("\n")
        task, steps, cur = lines[0].strip(), [], None
        for line in lines[1:]:
            m = _REACT_LINE.match(line.strip())
            if not m:
                if cur is not None and steps and cur == "Observation":
                    steps[-1]["observation"] += "\n" + line.strip()
                continue
            cur, body = m.group(1), m.group(2).strip()
            if cur == "Thought":
                steps.append({"reasoning": body, "action": "", "observation": ""})
            elif cur == "Action" and steps:
                a = _REACT_ACTION.match(body)
                steps[-1]["action"] = f"{a.group(1).lower()}[{a.group(2)}]" if a else body
            elif cur == "Observation" and steps:
                steps[-1]["observation"] = body
        if steps:
            out.append(transcript(task, steps))
    return out
