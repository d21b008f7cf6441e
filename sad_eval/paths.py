"""Where sad-eval keeps things: data root, cache, and the default data source."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The installed benchmark data (``$SAD_EVAL_DATA``, default ``~/.cache/sad-eval/data``)."""
    env = os.environ.get("SAD_EVAL_DATA")
    return Path(env).expanduser() if env else cache_root() / "data"


def cache_root() -> Path:
    """Models, indexes and other derived files (``$SAD_EVAL_CACHE``, default ``~/.cache/sad-eval``)."""
    env = os.environ.get("SAD_EVAL_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/sad-eval").expanduser()


def default_data_source() -> Path:
    """Where `sad-eval data install` copies from by default: ``../shared/data`` beside the repo,
    or ``$SAD_EVAL_DATA_SOURCE``."""
    env = os.environ.get("SAD_EVAL_DATA_SOURCE")
    return Path(env).expanduser() if env else (REPO_ROOT.parent / "shared" / "data")
