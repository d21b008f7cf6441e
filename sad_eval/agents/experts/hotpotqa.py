"""The HotPotQA oracle teacher: a scripted ReAct agent that reads the supporting facts.

It plays the env's own actions, in the order a careful human would:

- bridge questions: search the first-hop page (the one the question talks about), look up the
  sentence that names the bridge entity if it is not among the first 5 sentences, search the
  bridge entity's page, look up the answer sentence if needed, answer;
- comparison questions: search both entities, look up the compared fact when needed, compare
  (yes/no, or which of the two).

Its reasoning says what it needs next and quotes what it found (the supporting sentence), so the
REASON spans carry the evidence a student has to learn to extract.

Privileged input (``info["privileged"]``, see ``sad_eval/envs/hotpotqa.py``): gold titles and
supporting facts (used to choose pages, hop order and lookup keywords) and the gold answer.
By default (``grounded=True``) it only answers the gold string when it appears in what it has
observed (or is yes/no for a comparison); otherwise it answers the observed span closest to the
gold answer (token F1). So its trajectories never state an answer the observations do not
support, and its EM on dev500 is below 100% (docs/hotpotqa.md). ``grounded=False`` always
answers the gold string.

``build_exemplars`` turns oracle episodes on ``train`` into few-shot transcripts; ``react_exemplars``
returns ReAct's own ``webthink_simple6`` prompt text from the data dir.
"""

from __future__ import annotations

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

EXEMPLAR_VERSION = 1
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
    keyword: str | None = None  # lookup keyword, when the target is not among the first sentences
    lookups: int = 0  # how many lookups of `keyword` reach the target
    sentences: list[str] = field(default_factory=list)

    @property
    def target_text(self) -> str:
        return self.sentences[self.target].strip() if 0 <= self.target < len(self.sentences) else ""


@dataclass
class Plan:
    kind: str  # bridge | yesno | choice
    hops: list[Hop]
    answer: str
    question: str
    actions: list[tuple[str, int]] = field(default_factory=list)  # (verb, hop index)


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


def _strip_stop(phrase: str) -> str:
    words = phrase.split()
    while words and words[0].lower() in _STOP | {"on", "in", "after", "before", "during", "since"}:
        words = words[1:]
    return " ".join(words)


def _keyword_candidates(sentence: str, question: str, fallback: Sequence[str]) -> list[str]:
    """Lookup keywords for a target sentence, most natural first: words of the question that the
    sentence contains (what an agent without the answer would look up, as ReAct's "look up eastern
    sector"), then the sentence's names, then its long words; the answer or the next title last."""
    low = sentence.lower()
    q_words = [w for w in _WORDS.findall(question) if w.lower() not in _STOP and (len(w) >= 4 or w.isdigit())]
    out = sorted({w for w in q_words if w.lower() in low}, key=lambda w: (-len(w), w))
    phrases = {_strip_stop(m.group(0).strip(" .")) for m in _CAP_PHRASE.finditer(sentence)}
    out += sorted((p for p in phrases if len(p) >= 3 and p.lower() not in _STOP), key=lambda p: (-len(p), p))
    out += sorted({w for w in _WORDS.findall(sentence) if len(w) >= 5 and w.lower() not in _STOP},
                  key=lambda w: (-len(w), w))
    out += [p for p in fallback if p and p.lower() in low]
    return list(dict.fromkeys(out))


def _choose_keyword(sentences: list[str], target: int, question: str,
                    fallback: Sequence[str]) -> tuple[str, int]:
    """The candidate that reaches ``target`` in the fewest lookups (ties: the more natural one)."""
    best: tuple[int, int, str] | None = None
    for rank, kw in enumerate(_keyword_candidates(sentences[target], question, fallback)):
        cost = _lookup_cost(sentences, kw, target)
        if cost is not None and (best is None or (cost, rank) < best[:2]):
            best = (cost, rank, kw)
            if cost == 1:
                break
    if best is None:  # cannot happen for a non-empty sentence; be safe
        return sentences[target].split()[0], 1
    return best[2], best[0]


def make_plan(pv: dict[str, Any], max_steps: int = 8) -> Plan:
    """Pages, hop order, target sentences and lookup keywords from the privileged facts."""
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
        target: int | None = None
        if kind == "bridge" and last and not yesno:
            target = next((i for i in sup if _contains(sents[i], answer)), None)
            if target is None:
                with_ans = [i for i, s in enumerate(sents) if _contains(s, answer)]
                vis = _visible(sents, n_vis)
                target = next((i for i in with_ans if i in vis), with_ans[0] if with_ans else None)
        elif kind == "bridge" and nxt:
            vis = _visible(sents, n_vis)
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
        hop = Hop(t, target, sentences=sents)
        if sents and target not in _visible(sents, n_vis):
            preferred = [answer] if not yesno else []
            if nxt:
                preferred += [nxt] + _forms(nxt)
            hop.keyword, hop.lookups = _choose_keyword(sents, target, question, preferred)
        hops.append(hop)

    # Fit the step budget: searches + finish always; drop the costliest lookups first.
    budget = max_steps - len(hops) - 1
    while sum(h.lookups for h in hops) > budget:
        worst = max(hops, key=lambda h: h.lookups)
        worst.keyword, worst.lookups = None, 0
    actions: list[tuple[str, int]] = []
    for j, h in enumerate(hops):
        actions.append(("search", j))
        actions += [("lookup", j)] * h.lookups
    actions.append(("finish", len(hops) - 1))
    return Plan(kind, hops, answer, question, actions)


# ------------------------------------------------------------------ the policy

class HotPotQAOracle:
    """Scripted ReAct teacher for HotPotQA (``name="oracle"``)."""

    name = "oracle"

    def __init__(self, grounded: bool = True, max_steps: int = 8):
        self.grounded = grounded
        self.max_steps = max_steps

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        return [self._act(s) for s in states]

    # --- one turn
    def _act(self, state: EpisodeState) -> Turn:
        pv = state.info.get("privileged")
        if not pv:
            raise SadEvalError("the HotPotQA oracle needs info['privileged'] (build the env with privileged=True)")
        mem = state.memory
        if mem.get("task_id") != state.task_id or "plan" not in mem:
            mem.clear()
            mem["task_id"] = state.task_id
            mem["plan"] = make_plan(pv, min(self.max_steps, int(pv.get("max_steps", self.max_steps))))
            mem["seen"] = {}  # hop index -> target sentence observed
        plan: Plan = mem["plan"]
        k = len(state.steps)
        if k > 0:
            self._note(plan, mem, k - 1, state.steps[-1].observation)
        verb, j = plan.actions[min(k, len(plan.actions) - 1)]
        hop = plan.hops[j]
        if verb == "search":
            return Turn(self._why_search(plan, mem, j, k), f"search[{hop.title}]")
        if verb == "lookup":
            return Turn(self._why_lookup(plan, mem, j, k), f"lookup[{hop.keyword}]")
        answer = self._answer(plan, state)
        return Turn(self._why_answer(plan, mem, answer), f"finish[{answer}]")

    def _note(self, plan: Plan, mem: dict, k: int, obs: str) -> None:
        """Record whether the observation of action ``k`` showed its hop's target sentence."""
        verb, j = plan.actions[min(k, len(plan.actions) - 1)]
        target = plan.hops[j].target_text
        if target and " ".join(target.split()) in " ".join(obs.split()):
            mem["seen"][j] = True

    # --- reasoning text
    def _found(self, plan: Plan, j: int) -> str:
        hop = plan.hops[j]
        focus = None
        if j == len(plan.hops) - 1 and plan.kind != "yesno":
            focus = plan.answer
        elif j + 1 < len(plan.hops):
            focus = next((f for f in _forms(plan.hops[j + 1].title) if f.lower() in hop.target_text.lower()), None)
        return f'{_page(hop.title, True)} says: "{_quote(hop.target_text, focus)}"'

    def _why_search(self, plan: Plan, mem: dict, j: int, k: int) -> str:
        hop = plan.hops[j]
        if j == 0:
            if plan.kind == "bridge":
                if len(plan.hops) == 1:
                    return f"I need to search {hop.title} and find the answer to the question there."
                return (f"I need to search {hop.title} first and find the entity it links to; the answer "
                        f"should be on that entity's page.")
            others = " and ".join(h.title for h in plan.hops)
            what = ("whether the statement holds for both" if plan.kind == "yesno"
                    else "which of the two fits the question")
            return f"The question compares {others}. I need to search each of them and check {what}, starting with {hop.title}."
        prev = plan.hops[j - 1]
        found = self._found(plan, j - 1) + "." if mem["seen"].get(j - 1) else (
            f"{_page(prev.title, True)} did not show exactly what I needed.")
        if plan.kind == "bridge":
            if mem["seen"].get(j - 1) and _names(prev.target_text, hop.title):
                link = f"So the entity it leads to is {hop.title}."
            else:
                link = f"The page links this to {hop.title}, the entity the question needs next."
            return f"{found} {link} I need to search {hop.title} and find the answer there."
        return f"{found} Now I need the same information about {hop.title}, so I will search it."

    def _why_lookup(self, plan: Plan, mem: dict, j: int, k: int) -> str:
        hop = plan.hops[j]
        prev_verb = plan.actions[k - 1][0] if k > 0 else "search"
        if prev_verb == "lookup":
            return f'That sentence is not the one I need. I will look up "{hop.keyword}" again for the next match.'
        last = j == len(plan.hops) - 1
        if plan.kind == "bridge":
            need = ("the answer to the question" if last
                    else "how it connects to the rest of the question")
        else:
            need = f"the fact the question compares about {hop.title}"
        return (f"The first sentences of {_page(hop.title)} do not mention {need}. "
                f'I will look up "{hop.keyword}" on this page.')

    def _why_answer(self, plan: Plan, mem: dict, answer: str) -> str:
        if plan.kind == "bridge":
            j = len(plan.hops) - 1
            found = self._found(plan, j) + "." if mem["seen"].get(j) else (
                f"{_page(plan.hops[j].title, True)} does not state it word for word.")
            return f"{found} So the answer is {answer}."
        facts = " ".join(self._found(plan, j) + "." for j in range(len(plan.hops)) if mem["seen"].get(j))
        names = " and ".join(h.title for h in plan.hops)
        if plan.kind == "yesno":
            return f"{facts} Comparing {names} on what the question asks, the answer is {answer}."
        return f"{facts} Comparing {names}, {answer} is the one that fits the question, so the answer is {answer}."

    # --- the answer
    def _answer(self, plan: Plan, state: EpisodeState) -> str:
        gold = plan.answer
        if not self.grounded or _norm(gold) in ("yes", "no"):
            return gold
        observed = " ".join(s.observation for s in state.steps)
        if _contains(observed, gold) or _variant_in(observed, gold):
            return gold
        return best_span(observed, gold) or gold


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
        return "bridge-lookup" if any(h.lookups for h in plan.hops) else "bridge"
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
    from sad_eval.harness import run_episode

    env = HotPotQAEnv(split="train", data_root=data_root)
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
        kind = _kind_of(make_plan(info["privileged"], env.max_steps))
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
