"""What produced a file: the package versions and the installed data's checksum (run manifests,
experiment manifests and reports record them)."""

from __future__ import annotations

import hashlib
import platform

# the packages whose version can change a result
PACKAGES = ("sad-eval", "torch", "transformers", "gymnasium", "textworld", "alfworld", "bm25s")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def data_checksum() -> str | None:
    """The SHA-256 of the data root's SHA256SUMS (None when the data is not installed)."""
    from sad_eval.paths import data_root

    sums = data_root() / "SHA256SUMS"
    return hashlib.sha256(sums.read_bytes()).hexdigest() if sums.is_file() else None
