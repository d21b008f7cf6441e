"""The 1k-product catalogue as the original server's `load_products()` leaves it, plus prices.

Products come from `webshop/items_1k_documents.jsonl` (already processed the way WebShop's
`engine.load_products` processes raw products: lowercased options with `/` -> ` | `, `Price`
tag, `pricing` floats), attributes and synthetic instructions from `items_ins_v2_1000.json`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sad_eval.data import require
from sad_eval.errors import SadEvalError

DOCS_FILE = "webshop/items_1k_documents.jsonl"
INS_FILE = "webshop/items_ins_v2_1000.json"
SEED = 233  # the original's goal-shuffle seed; we also use it for the price draws (see prices())


@dataclass
class Catalog:
    products: list[dict[str, Any]]  # catalogue order (the order of the documents file)
    by_asin: dict[str, dict[str, Any]]
    contents: dict[str, str]  # asin -> the text the original Lucene index held
    prices: dict[str, float]  # asin -> the price the reward uses
    root: Path = field(default_factory=Path)

    def get(self, asin: str) -> dict[str, Any] | None:
        return self.by_asin.get(asin.strip().upper())


def _clean(p: dict[str, Any], ins: dict[str, Any]) -> dict[str, Any]:
    bullets = p.get("BulletPoints") or []
    if isinstance(bullets, str):
        bullets = [bullets]
    images = p.get("images") or []
    return {
        "asin": p["asin"],
        "name": p.get("name") or p.get("Title", ""),
        "Title": p.get("Title") or p.get("name", ""),
        "Description": p.get("Description") or "",
        "BulletPoints": [str(b) for b in bullets],
        "Reviews": p.get("Reviews") or [],
        "Rating": p.get("Rating") or "N.A.",
        "Price": p.get("Price") or "$100.0",
        "pricing": [float(x) for x in (p.get("pricing") or [100.0])][:2],
        "options": {str(k).lower(): [str(v) for v in vs] for k, vs in (p.get("options") or {}).items()},
        "option_to_image": p.get("option_to_image") or {},
        # the attribute file is the source of truth in the original (`DEFAULT_ATTR_PATH`)
        "Attributes": list(ins.get("attributes") or p.get("Attributes") or ["DUMMY_ATTR"]),
        "category": p.get("category", ""),
        "query": str(p.get("query", "")).lower().strip(),
        "product_category": p.get("product_category", ""),
        "MainImage": p.get("MainImage") or (images[0] if isinstance(images, list) and images else ""),
        "instruction_text": ins.get("instruction"),
        "instruction_attributes": ins.get("instruction_attributes"),
    }


def prices(products: list[dict[str, Any]], rng: random.Random) -> dict[str, float]:
    """The original's `generate_product_prices`: a fixed price, or a uniform draw inside a
    `$a to $b` range. The original drew from the unseeded global RNG; we draw from `rng`
    (seeded 233) in catalogue order so that prices, and so budgets, are reproducible."""
    out = {}
    for p in products:
        pr = p["pricing"]
        out[p["asin"]] = 100.0 if not pr else pr[0] if len(pr) == 1 else rng.uniform(*pr[:2])
    return out


def load_catalog(root: Path | None = None) -> Catalog:
    """Read the catalogue (cached per data root)."""
    return _load(str(Path(require(DOCS_FILE, root)).resolve()), str(Path(require(INS_FILE, root)).resolve()))


@lru_cache(maxsize=4)
def _load(docs_path: str, ins_path: str) -> Catalog:
    try:
        ins_all = json.loads(Path(ins_path).read_text())
        products, contents = [], {}
        with open(docs_path) as f:
            for line in f:
                if not line.strip():
                    continue
                doc = json.loads(line)
                p = _clean(doc["product"], ins_all.get(doc["product"]["asin"], {}))
                if p["asin"] in contents:
                    continue  # the original skipped duplicate ASINs too
                products.append(p)
                contents[p["asin"]] = doc.get("contents") or p["Title"]
    except (OSError, ValueError, KeyError) as e:
        raise SadEvalError(f"cannot read the WebShop catalogue ({docs_path}): {e}") from e
    rng = random.Random(SEED)
    return Catalog(products, {p["asin"]: p for p in products}, contents, prices(products, rng),
                   Path(docs_path).parent.parent)
