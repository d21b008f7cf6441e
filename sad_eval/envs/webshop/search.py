"""Product search: BM25 (bm25s) over the text the original Lucene index held.

The original used pyserini's LuceneSearcher (BM25, k1=0.9, b=0.4, English analyzer with
Porter stemming and stopwords) over each product's `contents` field, returning the top 50.
Here: bm25s with the same BM25 variant and parameters over the same `contents`, the English
stopword list and an S-stemmer (plural folding) instead of Porter. Ranks can differ from
Lucene's on ties and stems; the result size (<= 50, 10 per page) is the original's.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

import numpy as np

from sad_eval.envs.webshop.catalog import Catalog

SEARCH_RETURN_N = 50
PRODUCT_WINDOW = 10
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def s_stem(word: str) -> str:
    """Harman's S-stemmer: fold English plurals (shoes -> shoe, batteries -> battery)."""
    if len(word) > 3 and word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def tokenize(text: str, stopwords: frozenset[str]) -> list[str]:
    return [s_stem(t) for t in _TOKEN.findall(text.lower()) if t not in stopwords]


class SearchEngine:
    """BM25 over the catalogue; thread-safe for reads (scoring builds no shared state)."""

    def __init__(self, catalog: Catalog):
        import logging

        import bm25s
        from bm25s.stopwords import STOPWORDS_EN

        logging.getLogger("bm25s").setLevel(logging.WARNING)

        self.catalog = catalog
        self.asins = [p["asin"] for p in catalog.products]
        self.stopwords = frozenset(STOPWORDS_EN)
        corpus = [tokenize(catalog.contents[a], self.stopwords) for a in self.asins]
        # Lucene's BM25 (pyserini defaults k1=0.9, b=0.4)
        self.bm25 = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
        self.bm25.index(corpus, show_progress=False)
        self.vocab = set(self.bm25.vocab_dict)

    def search(self, keywords: Sequence[str], rng: random.Random | None = None) -> list[str]:
        """ASINs for a keyword list, best first (at most 50). Like the original, a first keyword
        `<r>` samples random products, `<a> attr`, `<c> category`, `<q> query` filter exactly."""
        products = self.catalog.products
        if keywords and keywords[0] == "<r>":
            rng = rng or random.Random(0)
            return [p["asin"] for p in rng.sample(products, k=min(SEARCH_RETURN_N, len(products)))]
        if keywords and keywords[0] in ("<a>", "<c>", "<q>"):
            arg = " ".join(keywords[1:]).strip()
            field = {"<a>": None, "<c>": "category", "<q>": "query"}[keywords[0]]
            if field is None:
                return [p["asin"] for p in products if arg in p["Attributes"]]
            return [p["asin"] for p in products if p[field] == arg]
        tokens = [t for t in tokenize(" ".join(keywords), self.stopwords) if t in self.vocab]
        if not tokens:
            return []
        scores = self.bm25.get_scores(tokens)
        top = np.argsort(-scores, kind="stable")[:SEARCH_RETURN_N]
        return [self.asins[i] for i in top if scores[i] > 0]


def page_of(asins: Sequence[str], page: int) -> list[str]:
    return list(asins[(page - 1) * PRODUCT_WINDOW: page * PRODUCT_WINDOW])
