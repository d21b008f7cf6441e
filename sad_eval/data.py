"""Benchmark data: install from a source directory with checksums, locate files, report status.

The source layout is the one described in ``shared/data/PROVENANCE.md``; every file is listed
in the source's ``SHA256SUMS``. Installing copies (or links) each file into the data root and
verifies it, so a partial or tampered source never yields a half-installed root silently.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sad_eval.errors import SadEvalError
from sad_eval.paths import data_root

SUMS_FILE = "SHA256SUMS"
MARKER = ".sad-eval-installed"

# Where a user without ../shared/data gets the same files upstream (see docs/data.md).
UPSTREAM = {
    "alfworld": "ALFWorld json_2.1.1 games: `pip install alfworld && alfworld-download` "
    "(GitHub release json_2.1.1_json.zip); copy valid_seen, valid_unseen and a train subset "
    "into alfworld/json_2.1.1/, and logic/ into alfworld/logic/",
    "webshop": "WebShop small catalogue: WebShop's `setup.sh -d small`; items_ins_v2_1000.json "
    "from AgentGym agentenv-webshop/webshop/data/, human_goals.json from WebShop baseline_models/data/",
    "hotpotqa": "HotPotQA: hotpot_dev_distractor_v1.json and hotpot_train_v1.1.json from "
    "hotpotqa.github.io, converted to hotpotqa/hotpotqa_with_context.jsonl (docs/data.md)",
    "react": "ReAct prompts: github.com/ysymyth/ReAct data/ and prompts/",
}

def read_sums(source: Path) -> dict[str, str]:
    """Map relative path -> sha256 from a ``SHA256SUMS`` file."""
    sums_path = source / SUMS_FILE
    if not sums_path.is_file():
        raise SadEvalError(f"no {SUMS_FILE} in data source {source}; is it a sad-eval data directory?")
    sums: dict[str, str] = {}
    for n, line in enumerate(sums_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise SadEvalError(f"{sums_path}:{n}: not a 'sha256  path' line")
        sums[_safe_relpath(parts[1].strip().lstrip("*"), sums_path, n)] = parts[0].lower()
    return sums


def _safe_relpath(entry: str, sums_path: Path, n: int) -> str:
    """A SHA256SUMS entry as a path inside the tree; an absolute path or one that climbs out with
    `..` is refused (it would read or write, and unlink, files outside source and destination)."""
    rel = os.path.normpath(entry)
    if (not entry or os.path.isabs(entry) or os.path.isabs(rel) or rel == "."
            or rel == ".." or rel.startswith(".." + os.sep) or "\x00" in entry):
        raise SadEvalError(f"{sums_path}:{n}: refusing entry {entry!r}: paths must stay inside the data tree")
    return rel


def _inside(root: Path, path: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(root: Path, sums: dict[str, str]) -> list[str]:
    """Return problems (missing or mismatching files) of ``root`` against ``sums``."""
    problems = []
    for rel, digest in sorted(sums.items()):
        path = root / rel
        if not path.is_file():
            problems.append(f"missing file: {rel}")
        elif sha256_file(path) != digest:
            problems.append(f"checksum mismatch: {rel}")
    return problems


def install(source: Path, dest: Path | None = None, link: bool = False, log=print) -> Path:
    """Install the data from ``source`` into ``dest`` (default: the data root).

    Every source file is verified before anything is written; an already-installed root with
    the same ``SHA256SUMS`` is left alone (idempotent and fast).
    """
    source = Path(source).expanduser().resolve()
    dest = Path(dest or data_root()).expanduser()
    if not source.is_dir():
        raise SadEvalError(f"data source {source} does not exist (pass --from DIR; see docs/data.md)")
    sums = read_sums(source)
    sums_text = (source / SUMS_FILE).read_text()
    marker = dest / MARKER
    if marker.is_file() and (dest / SUMS_FILE).is_file() and (dest / SUMS_FILE).read_text() == sums_text:
        missing = [rel for rel in sums if not (dest / rel).is_file()]
        if not missing:
            log(f"data already installed in {dest}")
            return dest
    # a folder of the destination that is a symlink could still lead a write outside it
    dest_real = dest.resolve()
    for rel in sums:
        if not _inside(dest_real, (dest / rel).parent.resolve()) or not _inside(source, (source / rel).parent.resolve()):
            raise SadEvalError(f"{source / SUMS_FILE}: refusing entry {rel!r}: it leads outside the "
                               "source or the destination")
    problems = verify(source, sums)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; … {len(problems) - 5} more" if len(problems) > 5 else "")
        raise SadEvalError(f"data source {source} failed verification ({len(problems)} problems): {shown}")
    dest.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for rel in sorted(sums):
        src, dst = source / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if link:
            dst.symlink_to(src)
        else:
            shutil.copyfile(src, dst)
    shutil.copyfile(source / SUMS_FILE, dest / SUMS_FILE)
    if (source / "PROVENANCE.md").is_file():
        shutil.copyfile(source / "PROVENANCE.md", dest / "PROVENANCE.md")
    from sad_eval.statefiles import write_json_atomic

    write_json_atomic(marker, {"source": str(source), "files": len(sums), "link": link}, indent=None)
    log(f"installed {len(sums)} files from {source} into {dest} ({'linked' if link else 'copied'})")
    return dest


def require(rel: str, root: Path | None = None) -> Path:
    """Path of an installed data file or folder, or one clear error naming the fix."""
    root = Path(root or data_root())
    path = root / rel
    if not path.exists():
        raise SadEvalError(
            f"benchmark data not found: {path} (run `sad-eval data install` first, or set SAD_EVAL_DATA)"
        )
    return path


@dataclass
class DatasetStatus:
    dataset: str
    split: str
    unit: str
    items: int
    present: bool


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def status(root: Path | None = None) -> list[DatasetStatus]:
    """The rows of data no single env owns (ReAct's prompts); each env's own rows come from its
    spec (`EnvSpec.data_status`) and `sad_eval.envs.data_status` puts them all together."""
    root = Path(root or data_root())
    rows: list[DatasetStatus] = []
    react = root / "react"
    n_react = len(list(react.glob("*.json"))) if react.is_dir() else 0
    rows.append(DatasetStatus("react", "prompts", "files", n_react, n_react > 0))
    return rows
