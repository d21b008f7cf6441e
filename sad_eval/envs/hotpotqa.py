"""HotPotQA-ReAct as a Gymnasium env over the offline wiki store (``sad_eval/HotPotQA-v0``).

The agent sees the question, then acts with ``search[entity]``, ``lookup[keyword]`` and
``finish[answer]``, as in ReAct's Wikipedia env (Yao et al. 2023, github.com/ysymyth/ReAct
``wikienv.py``; reimplemented here from its description, no code copied):

- ``search[entity]``: an exact title hit (case-, whitespace- and accent-insensitive, like
  Wikipedia's redirects) returns the page's first 5 sentences and makes it the current page;
  otherwise ``Could not find <entity>. Similar: ['T1', ..., 'T5'].`` (the current page is kept).
- ``lookup[keyword]``: the next sentence of the current page that contains ``keyword``
  (case-insensitive substring of the keyword as typed), as ``(Result i / n) <sentence>``; ``No more
  results.`` once the list is used up, or before any page was found (ReAct's env has an empty
  list then). The list restarts when the keyword string as typed changes (``lookup[the]`` then
  ``lookup[The]`` restarts, as ReAct compares the raw string) or after a new search hit.
- ``think[thought]``: ``Nice thought.`` (ReAct's env answers so; the step counts).
- ``finish[answer]``: ends the episode; reward = exact match after HotPotQA's answer
  normalization (:func:`normalize_answer`). ``info`` has ``em``, ``f1``, ``answer``,
  ``gold_answer``; ``success`` = ``score`` = em; ``meta`` has ``em``, ``f1``, ``type``, ``level``.
- anything else: an ``Invalid action: ...`` observation (the step still counts). The verb is
  case-insensitive (``Search[...]``, as ReAct's prompts write it).

Step cap (ReAct's webthink loop: 7 agent actions, then the loop itself sends ``finish[]``):
after ``max_steps`` actions (default :data:`REACT_MAX_STEPS` = 7) without a finish the episode is
truncated as that forced ``finish[]``: answer ``""``, em = f1 = 0, ``info["forced_finish"]``.
``max_steps=8`` (``--max-steps 8``) is this project's former budget of 8 agent actions
(:data:`SAD_MAX_STEPS`), a named departure from ReAct (docs/hotpotqa.md).

The corpus is shared by all questions: every search sees all 32.6k paragraphs of the data file,
not just the question's own 10 (docs/hotpotqa.md discusses what that changes).

Splits (task ids are HotPotQA ids, sorted): ``train`` (908), ``dev`` (the 1,838 dev questions of
the distractor setting, all with their gold paragraphs), ``dev500`` (a fixed seeded sample of 500
of ``dev``; the default), ``react130`` (the 130 of ReAct's 500 eval questions whose gold
paragraphs are present).

``info["privileged"]`` (present when built with ``privileged=True``, as the oracle asks) carries what the
scripted oracle needs: the gold answer, question type and level, supporting facts with their
sentence text, and the gold pages as the store holds them. Model policies never read it.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from sad_eval.data import require
from sad_eval.envs import wiki_store
from sad_eval.envs.base import TextEnv
from sad_eval.envs.hotpotqa_spec import SPEC
from sad_eval.errors import SadEvalError
from sad_eval.paths import data_root as default_data_root

SPLITS = SPEC.splits  # ("train", "dev", "dev500", "react130")
DEV500_SEED = 0
DEV500_SIZE = 500
SEARCH_SENTENCES = 5
SIMILAR_K = 5
REACT_MAX_STEPS = 7  # ReAct's webthink loop: `for i in range(1, 8)`, then a forced finish[]
SAD_MAX_STEPS = 8  # this project's former cap: 8 agent actions (a departure; opt in with max_steps=8)
DEFAULT_MAX_STEPS = REACT_MAX_STEPS
REACT_DEV_REL = "react/hotpot_dev_v1_simplified.json"
REACT_IDX_REL = "hotpotqa/react500_covered_idx.json"

_PUNCT = frozenset(string.punctuation)
_ACTION = re.compile(r"^\s*(search|lookup|finish|think)\s*\[(.*)\]\s*$", re.I | re.S)


# ------------------------------------------------------------------ HotPotQA's answer metric

def normalize_answer(s: str) -> str:
    """HotPotQA's official normalization: lower case, drop punctuation, drop the articles a/an/the,
    collapse whitespace (reimplemented from the description of hotpot_evaluate_v1.py)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 of normalized answers; yes/no/noanswer only score when they match exactly."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    special = {"yes", "no", "noanswer"}
    if (pred in special or ref in special) and pred != ref:
        return 0.0
    p_toks, r_toks = pred.split(), ref.split()
    common = sum((Counter(p_toks) & Counter(r_toks)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p_toks), common / len(r_toks)
    return 2 * precision * recall / (precision + recall)


# ------------------------------------------------------------------ questions and splits

@lru_cache(maxsize=4)
def _react_dev(root: str) -> tuple[dict[str, str], list[str]]:
    """ReAct's dev file: question -> type (to fill records without a type), and the question texts of
    ReAct's 500 eval questions whose gold paragraphs are present. Empty when the files are absent."""
    dev_path, idx_path = Path(root) / REACT_DEV_REL, Path(root) / REACT_IDX_REL
    if not dev_path.is_file():
        return {}, []
    dev = json.loads(dev_path.read_text())
    types = {d["question"]: d.get("type") for d in dev}
    react = []
    if idx_path.is_file():
        react = [dev[i]["question"] for i in json.loads(idx_path.read_text())["react500_idx_with_gold"]]
    return types, react


@lru_cache(maxsize=4)
def _splits(root: str, index: str) -> dict[str, list[str]]:
    store = wiki_store.load_store(Path(root))
    qs = store.questions
    train = sorted(q for q, r in qs.items() if r["split"] == "train" and r["has_gold"])
    dev = sorted(q for q, r in qs.items() if r["split"] == "dev" and r["setting"] == "distractor" and r["has_gold"])
    dev500 = sorted(random.Random(DEV500_SEED).sample(dev, min(DEV500_SIZE, len(dev))))
    _, react_questions = _react_dev(root)
    by_question = {r["question"]: q for q, r in qs.items() if r["has_gold"]}
    react130 = sorted({by_question[t] for t in react_questions if t in by_question})
    return {"train": train, "dev": dev, "dev500": dev500, "react130": react130}


def list_tasks(split: str = "dev500", data_root: Path | str | None = None) -> list[str]:
    """The task ids of a split, sorted (HotPotQA ids)."""
    if split not in SPLITS:
        raise SadEvalError(f"unknown hotpotqa split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(data_root or default_data_root())
    path = wiki_store.ensure_index(root)
    return list(_splits(str(root), str(path))[split])


def question_type(record: dict[str, Any], root: Path) -> str | None:
    if record.get("type"):
        return record["type"]
    types, _ = _react_dev(str(root))
    return types.get(record["question"])


# ------------------------------------------------------------------ the env

class HotPotQAEnv(TextEnv):
    """Search/lookup/finish over the shared offline wiki; see the module docstring (contract: `envs.base`)."""

    env_name = "hotpotqa"

    def __init__(self, split: str = "dev500", data_root: Path | str | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS, backend: str = "local", privileged: bool = False,
                 search_sentences: int = SEARCH_SENTENCES):
        if split not in SPLITS:
            raise SadEvalError(f"unknown hotpotqa split {split!r}; choose one of {', '.join(SPLITS)}")
        if max_steps < 1:
            raise SadEvalError("max_steps must be at least 1")
        self.root = Path(data_root or default_data_root())
        require(wiki_store.SOURCE_REL, self.root)  # one clear error naming `sad-eval data install`
        self.max_steps = max_steps
        self.search_sentences = search_sentences
        self.store = wiki_store.load_store(self.root)
        if backend == "local":
            self.backend = self.store
        elif backend == "live":
            self.backend = wiki_store.LiveWikipedia()
        else:
            raise SadEvalError(f"unknown hotpotqa backend {backend!r}; choose local or live")
        self.backend_name = backend
        # observations and actions are any text (the Wikipedia sentences are not alphanumeric)
        self._init_text_env(split, list_tasks(split, self.root), privileged)
        self._record: dict[str, Any] | None = None
        self._privileged: dict[str, Any] | None = None
        self._steps = 0

    # --- contract (`TextEnv`): task selection and reset/step order live in the base
    def _reset_task(self, task_id: str, options: dict[str, Any]):
        record = self.store.questions[task_id]
        self._record = record
        self._type = question_type(record, self.root)
        self._steps = 0
        self._page: tuple[str, list[str]] | None = None
        self._lookup_kw: str | None = None
        self._lookup_hits: list[str] = []
        self._lookup_next = 0
        self._privileged = self._make_privileged(record) if self.privileged else None
        obs = f"Question: {record['question']}"
        return obs, self._info()

    def _step_task(self, action: str):
        self._steps += 1
        m = _ACTION.match(action or "")
        verb, raw = (m.group(1).lower(), m.group(2)) if m else (None, "")
        arg = raw.strip()
        reward, terminated, extra = 0.0, False, {}
        if verb == "finish":
            terminated, extra = True, self._score(arg)
            reward = extra["em"]
            obs = "Episode finished."
        elif verb == "search" and arg:
            obs = self._search(arg)
        elif verb == "lookup" and arg:
            obs = self._lookup(raw)
        elif verb == "think":
            obs = "Nice thought."
        else:
            shown = (action or "").strip()
            shown = shown if len(shown) <= 200 else shown[:200] + "..."
            obs = (f"Invalid action: {shown!r}. Use search[entity], lookup[keyword] or finish[answer]."
                   if not verb else f"Invalid action: {verb}[] needs an argument.")
        truncated = not terminated and self._steps >= self.max_steps
        if truncated:  # ReAct's loop sends finish[] itself after its last agent action
            extra = self._score("")
            extra["forced_finish"] = extra["meta"]["forced_finish"] = True
        info = self._info(**extra)
        info["action"] = verb if (verb and (arg or verb in ("finish", "think"))) else "invalid"
        info["rejected"] = info["action"] == "invalid"  # answered "Invalid action: ..."
        return obs, reward, terminated, truncated, info

    # --- actions
    def _search(self, entity: str) -> str:
        hit = self.backend.page(entity)
        if hit is None:
            similar = self.backend.similar(entity, SIMILAR_K)
            return f"Could not find {entity}. Similar: {similar}."
        self._page = hit
        self._lookup_kw, self._lookup_hits, self._lookup_next = None, [], 0
        sents = [s.strip() for s in hit[1] if s.strip()]
        return " ".join(sents[: self.search_sentences]) or f"{hit[0]} (empty page)"

    def _lookup(self, keyword: str) -> str:
        """ReAct's lookup: the list is rebuilt whenever the keyword *as typed* changes; matching is a
        case-insensitive substring test. No page yet: an empty list, so ``No more results.``"""
        if keyword != self._lookup_kw:
            self._lookup_kw = keyword
            page = self._page[1] if self._page is not None else []
            self._lookup_hits = [s.strip() for s in page if s.strip() and keyword.lower() in s.lower()]
            self._lookup_next = 0
        if self._lookup_next >= len(self._lookup_hits):
            return "No more results."
        self._lookup_next += 1
        return f"(Result {self._lookup_next} / {len(self._lookup_hits)}) {self._lookup_hits[self._lookup_next - 1]}"

    def _score(self, answer: str) -> dict[str, Any]:
        gold = self._record["answer"]
        em = exact_match(answer, gold)
        f1 = f1_score(answer, gold)
        meta = {"em": em, "f1": f1, "type": self._type, "level": self._record.get("level"),
                "answer": answer, "gold_answer": gold, "steps": self._steps}
        return {"success": bool(em), "score": em, "em": em, "f1": f1, "answer": answer,
                "gold_answer": gold, "meta": meta}

    # --- info
    def _info(self, **extra) -> dict[str, Any]:
        info: dict[str, Any] = {"task_id": self._record["id"] if self._record else None, "steps": self._steps}
        if self._privileged is not None:
            info["privileged"] = self._privileged
        info.update(extra)
        return info

    def _make_privileged(self, record: dict[str, Any]) -> dict[str, Any]:
        titles = list(dict.fromkeys(t for t, _ in record["supporting_facts"]))
        return {
            "question": record["question"], "answer": record["answer"], "type": self._type,
            "level": record.get("level"), "sentence_split": record.get("sentence_split"),
            "supporting_facts": [list(x) for x in record["supporting_facts"]],
            "support": [list(x) for x in record["support"]],
            "gold_titles": titles,
            "pages": {t: list(self.store.sentences_of(t) or []) for t in titles},
            "search_sentences": self.search_sentences,
            "max_steps": self.max_steps,
            # so the oracle can ask the same store which observed names reach a page
            "data_root": str(self.root), "backend": self.backend_name,
        }
