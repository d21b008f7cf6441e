"""The offline "Wikipedia" of HotPotQA-ReAct: every paragraph of the HotPotQA data file, one per title.

Built once from ``hotpotqa/hotpotqa_with_context.jsonl`` into ``cache_root()/indexes/`` and loaded
from there afterwards (plain text + JSON + a saved ``bm25s`` index; never pickle, so a planted cache
file cannot run code). The folder name carries the source file's
SHA-256 and the format version, so a changed data file (or a new format) builds a fresh index and
a stale one is never read.

What the store holds:
- ``title -> sentences``: the union of the context paragraphs of all 3,444 questions (32,591
  titles). A title that occurs in several questions with different paragraph versions (29 titles:
  a different sentence split, a non-breaking space, a cut-off sentence) gets ONE version, chosen
  deterministically: prefer a version from a record with HotPotQA's original sentence lists
  (``sentence_split == "original"``, so supporting-fact sentence ids refer to it), then the longest
  (most characters), then the lexicographically smallest sentence list.
- a BM25 index (``bm25s``) over "title title text" of every page, for the "Similar:" suggestions
  of a failed search;
- the question table (question, answer, type, level, split, supporting facts with their sentence
  text from the question's own context), so that listing tasks never re-reads the 22 MB file.

Search semantics (the env builds its observations from these):
- ``page(entity)``: an exact title hit, case- and whitespace-insensitive (after Unicode NFKC), and
  accent-insensitive as Wikipedia's redirects are (``Amon Goth`` finds ``Amon Göth``, ``Amanda
  Sorensen`` finds ``Amanda Sørensen``). An exact case-sensitive match wins over a
  case-insensitive one, which wins over an accent-folded one; among several variants
  (``Popular Science`` / ``Popular science``) the sorted-first title wins.
- ``similar(query, k)``: titles whose name without a trailing parenthetical equals the query
  (``Battle of Manila`` -> ``Battle of Manila (1945)``, what Wikipedia's disambiguation pages
  give), then BM25 hits, de-duplicated, at most ``k``.

Titles and sentences are HTML-unescaped when the store is built (HotPotQA keeps ``&amp;`` in 214
titles, e.g. ``Kenan &amp; Kel``; Wikipedia shows ``Kenan & Kel``).

An optional live backend (:class:`LiveWikipedia`, MediaWiki API over ``requests``) has the same
``page``/``similar`` interface; it is off by default and never used by tests.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sad_eval.data import require, sha256_file
from sad_eval.envs.base import EnvError
from sad_eval.paths import cache_root

SOURCE_REL = "hotpotqa/hotpotqa_with_context.jsonl"
FORMAT_VERSION = 3  # 2: HTML-unescaped titles and sentences; 3: + stored as text and JSON, no pickle
INDEX_PREFIX = "hotpotqa-wiki"

# A small English stop-word list (own list; function words that carry no title signal).
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his i if in into is it its of on or she "
    "that the their them there these they this to was were what when where which who whom why will "
    "with you your than then so not no do does did been being about after before over under also "
    "how".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
_PAREN = re.compile(r"\s*\([^()]*\)\s*$")


def normalize_title(text: str) -> str:
    """The key of an exact search: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


# Latin letters NFKD does not decompose, spelled as English Wikipedia's redirects spell them.
_FOLD_LETTERS = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "ð": "d", "æ": "ae", "œ": "oe", "þ": "th",
                               "ı": "i", "ß": "ss"})


def fold_title(text: str) -> str:
    """The key of an accent-insensitive search: :func:`normalize_title` without diacritics."""
    decomposed = unicodedata.normalize("NFKD", normalize_title(text))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.translate(_FOLD_LETTERS).split())


def base_title(title: str) -> str:
    """A normalized title without its trailing disambiguation: ``Ida (sword)`` -> ``ida``."""
    return normalize_title(_PAREN.sub("", title)) or normalize_title(title)


def tokenize(text: str) -> list[str]:
    """BM25 tokens: lower-cased word characters, stop words dropped."""
    return [t for t in _WORD.findall(unicodedata.normalize("NFKC", text).lower()) if t not in STOPWORDS]


# ------------------------------------------------------------------ building

@dataclass
class BuildStats:
    titles: int = 0
    paragraph_versions: int = 0
    conflicting_titles: int = 0
    questions: int = 0
    build_s: float = 0.0


def _choose_version(versions: dict[tuple[str, ...], bool]) -> tuple[str, ...]:
    """The deterministic pick among a title's paragraph versions (see module docstring)."""
    return min(versions, key=lambda v: (not versions[v], -sum(len(s) for s in v), v))


def read_source(source: Path) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]], BuildStats]:
    """Pages and question table from the data file."""
    versions: dict[str, dict[tuple[str, ...], bool]] = {}
    questions: dict[str, dict[str, Any]] = {}
    with open(source, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            original = rec.get("sentence_split", "original") == "original"
            ctx = {}
            for title, sents in rec["context"]:
                title = html.unescape(title)
                key = tuple(html.unescape(s).strip() for s in sents)
                ctx.setdefault(title, key)
                seen = versions.setdefault(title, {})
                seen[key] = seen.get(key, False) or original
            support = []
            facts = [[html.unescape(t), i] for t, i in rec["supporting_facts"]]
            for title, idx in facts:
                sents = ctx.get(title)
                text = sents[idx] if (sents is not None and idx is not None and 0 <= idx < len(sents)) else None
                support.append([title, idx, text])
            questions[rec["id"]] = {
                "id": rec["id"], "question": rec["question"], "answer": rec["answer"],
                "type": rec.get("type"), "level": rec.get("level"), "split": rec.get("split"),
                "setting": rec.get("setting"), "sentence_split": rec.get("sentence_split"),
                "supporting_facts": facts,
                "support": support,
                "has_gold": all(t in ctx for t, _ in facts),
            }
    pages = {t: list(_choose_version(v)) for t, v in versions.items()}
    stats = BuildStats(titles=len(pages), paragraph_versions=sum(len(v) for v in versions.values()),
                       conflicting_titles=sum(1 for v in versions.values() if len(v) > 1),
                       questions=len(questions))
    return pages, questions, stats


def _bm25_text(title: str, sentences: list[str]) -> str:
    return f"{title} {title} " + " ".join(sentences)


def build_index(source: Path, dest: Path, log=None) -> BuildStats:
    """Build the store for ``source`` into the folder ``dest`` (created; must not exist)."""
    import bm25s

    t0 = time.perf_counter()
    pages, questions, stats = read_source(source)
    titles = sorted(pages)
    sentences = [pages[t] for t in titles]
    corpus_tokens = [tokenize(_bm25_text(t, s)) for t, s in zip(titles, sentences)]
    bm25 = bm25s.BM25()
    bm25.index(corpus_tokens, show_progress=False)
    dest.mkdir(parents=True)
    bm25.save(str(dest / "bm25"), show_progress=False)
    _write_tables(dest, titles, sentences, questions)
    stats.build_s = time.perf_counter() - t0
    meta = {"format": FORMAT_VERSION, "source": str(source), "sha256": sha256_file(source),
            **stats.__dict__}
    (dest / "meta.json").write_text(json.dumps(meta, indent=1))
    if log:
        log(f"built the HotPotQA wiki index ({stats.titles} titles) in {stats.build_s:.1f}s: {dest}")
    return stats


PAGES_FILE, QUESTIONS_FILE = "pages.txt", "questions.json"
# pages.txt: one record per page, `title US sentence US sentence ...`, records joined by RS. Plain
# text, so loading runs no code (unlike the pickle it replaces), and splitting it is about twice as
# fast as parsing the same 19 MB as JSON (measured on a loaded 2-core machine: 1.0 s vs 2.0 s;
# the pickle took 0.4 s)
_RS, _US = "\x1e", "\x1f"


def _write_tables(dest: Path, titles: list[str], sentences: list[list[str]],
                  questions: dict[str, dict[str, Any]]) -> None:
    from sad_eval.statefiles import write_text_atomic

    records = []
    for title, sents in zip(titles, sentences):
        if any(_RS in x or _US in x for x in (title, *sents)):
            raise ValueError(f"page {title!r} contains a record separator (U+001E/U+001F)")
        records.append(_US.join((title, *sents)))
    write_text_atomic(dest / PAGES_FILE, _RS.join(records))
    write_text_atomic(dest / QUESTIONS_FILE, json.dumps(questions, ensure_ascii=False))


def _read_pages(path: Path) -> tuple[list[str], list[list[str]]]:
    text = path.read_bytes().decode("utf-8")  # bytes: no newline translation, and 3x faster than read_text
    records = [r.split(_US) for r in text.split(_RS)] if text else []
    return [r[0] for r in records], [r[1:] for r in records]


def _add_safe_tables(path: Path, source: Path) -> None:
    """An index folder built by an older version holds its tables as pickles, which are never
    loaded: the text/JSON tables are rebuilt from the data file beside them (the BM25 index is kept;
    nothing is removed, so older readers of the folder keep working)."""
    pages, questions, _ = read_source(source)
    titles = sorted(pages)
    _write_tables(path, titles, [pages[t] for t in titles], questions)


def index_root() -> Path:
    return cache_root() / "indexes"


def index_dir_for(sha: str) -> Path:
    return index_root() / f"{INDEX_PREFIX}-v{FORMAT_VERSION}-{sha[:16]}"


_BUILD_LOCK = threading.Lock()


def ensure_index(data_root: Path | None = None, rebuild: bool = False, log=None) -> Path:
    """The index folder for the installed data file, built first if missing or stale.

    Builds go to a temporary folder that is renamed into place, so a concurrent reader never
    sees a half-written index; older indexes of this store are removed afterwards.
    """
    source = require(SOURCE_REL, data_root)
    sha = sha256_file(source)
    final = index_dir_for(sha)
    with _BUILD_LOCK:
        if rebuild and final.exists():
            shutil.rmtree(final, ignore_errors=True)
        if (final / "meta.json").is_file():
            if not (final / QUESTIONS_FILE).is_file() or not (final / PAGES_FILE).is_file():
                _add_safe_tables(final, source)
            return final
        index_root().mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{INDEX_PREFIX}-build-", dir=index_root()))
        try:
            build_index(source, tmp / "index", log=log)
            try:
                os.rename(tmp / "index", final)
            except OSError:
                if not (final / "meta.json").is_file():  # lost a race only if the winner finished
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # stale indexes of this format only: another checkout may still read another format
        for old in index_root().glob(f"{INDEX_PREFIX}-v{FORMAT_VERSION}-*"):
            if old != final and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return final


# ------------------------------------------------------------------ the store

@dataclass
class WikiStore:
    """Pages, question table and BM25 index of one built index folder."""

    titles: list[str]
    sentences: list[list[str]]
    questions: dict[str, dict[str, Any]]
    bm25: Any
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._exact = {t: i for i, t in enumerate(self.titles)}
        self._norm: dict[str, int] = {}
        self._fold: dict[str, int] = {}
        self._base: dict[str, list[int]] = {}
        for i, t in enumerate(self.titles):  # titles are sorted: the first variant wins
            self._norm.setdefault(normalize_title(t), i)
            self._fold.setdefault(fold_title(t), i)
            self._base.setdefault(base_title(t), []).append(i)
        vocab = getattr(self.bm25, "vocab_dict", None) or {}
        self._vocab: dict[str, int] = vocab

    def __len__(self) -> int:
        return len(self.titles)

    # exact lookup
    def resolve(self, entity: str) -> str | None:
        """The title an exact (case/whitespace/accent-insensitive) search for ``entity`` hits, or None."""
        i = self._exact.get(entity.strip())
        if i is None:
            i = self._norm.get(normalize_title(entity))
        if i is None:
            i = self._fold.get(fold_title(entity))
        return None if i is None else self.titles[i]

    def sentences_of(self, title: str) -> list[str] | None:
        i = self._exact.get(title)
        return None if i is None else self.sentences[i]

    def page(self, entity: str) -> tuple[str, list[str]] | None:
        """``(title, sentences)`` of an exact hit, or None."""
        title = self.resolve(entity)
        return None if title is None else (title, self.sentences_of(title))

    # fuzzy search
    def bm25_search(self, query: str, k: int = 5) -> list[tuple[str, float]]:
        ids = [self._vocab[t] for t in tokenize(query) if t in self._vocab]
        if not ids:
            return []
        scores = self.bm25.get_scores(ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # score desc, then index (title order) asc
        return [(self.titles[i], float(scores[i])) for i in top if scores[i] > 0]

    def similar(self, query: str, k: int = 5) -> list[str]:
        """Up to ``k`` titles for a query that missed: same base title first, then BM25."""
        out: list[str] = []
        for i in self._base.get(base_title(query), []):
            if len(out) < k:
                out.append(self.titles[i])
        for title, _ in self.bm25_search(query, k + len(out)):
            if len(out) >= k:
                break
            if title not in out:
                out.append(title)
        return out


_STORES: dict[Path, WikiStore] = {}


def load_index(path: Path) -> WikiStore:
    import bm25s

    titles, sentences = _read_pages(path / PAGES_FILE)
    questions = json.loads((path / QUESTIONS_FILE).read_bytes())
    bm25 = bm25s.BM25.load(str(path / "bm25"), show_progress=False, verbosity=0)
    meta = json.loads((path / "meta.json").read_text())
    return WikiStore(titles, sentences, questions, bm25, path, meta)


def load_store(data_root: Path | None = None, rebuild: bool = False, log=None) -> WikiStore:
    """The store of the installed data, built on first use and shared within the process."""
    path = ensure_index(data_root, rebuild=rebuild, log=log)
    with _BUILD_LOCK:
        store = _STORES.get(path)
        if store is None or rebuild:
            store = _STORES[path] = load_index(path)
    return store


def clear_cache() -> None:
    """Forget loaded stores (tests, benchmarks)."""
    _STORES.clear()


# ------------------------------------------------------------------ live Wikipedia (optional)

_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


class LiveWikipedia:
    """The same ``page``/``similar`` interface over the MediaWiki API. Off by default.

    A page is the plain-text intro of the article (after redirects), split into sentences with a
    simple punctuation rule. Network failures raise ``EnvError`` (the episode is marked errored).
    """

    API = "https://en.wikipedia.org/w/api.php"

    def __init__(self, timeout: float = 10.0, user_agent: str = "sad-eval/0.1 (research harness)"):
        import requests

        self._session = requests.Session()
        self._session.headers["User-Agent"] = user_agent
        self.timeout = timeout

    def _get(self, **params) -> dict[str, Any]:
        import requests

        params.update(action="query", format="json", formatversion=2)
        try:
            r = self._session.get(self.API, params=params, timeout=self.timeout)
            r.raise_for_status()
            return r.json()
        except (requests.RequestException, ValueError) as e:
            raise EnvError(f"Wikipedia API request failed: {e}") from e

    def page(self, entity: str) -> tuple[str, list[str]] | None:
        data = self._get(prop="extracts", explaintext=1, exintro=1, redirects=1, titles=entity.strip())
        pages = data.get("query", {}).get("pages", [])
        if not pages or pages[0].get("missing") or not pages[0].get("extract"):
            return None
        text = " ".join(pages[0]["extract"].split())
        return pages[0]["title"], [s for s in _SENT_SPLIT.split(text) if s]

    def similar(self, query: str, k: int = 5) -> list[str]:
        data = self._get(list="search", srsearch=query, srlimit=k)
        return [hit["title"] for hit in data.get("query", {}).get("search", [])][:k]
