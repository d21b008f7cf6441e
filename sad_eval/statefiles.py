"""State files that survive a kill: atomic rewrites, readers that name a corrupt file, exclusive locks.

A state file (a run manifest, an experiment's manifest and stage stamps, a checkpoint's args) is
rewritten as a whole. Writing it in place leaves an empty or torn file when the process dies
mid-write, and every later resume then trips over it. `write_text_atomic` writes a sibling temp
file, fsyncs it and renames it over the target, so a reader sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sad_eval.errors import SadEvalError


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename (temp file in the same folder, fsynced first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); keep the target's mode, or the usual 0644
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, default=str))


class CorruptStateFile(SadEvalError):
    """A state file that exists but does not parse (a write killed by an older version, a bad disk)."""


def read_json_state(path: str | Path, what: str = "state file") -> Any:
    """The parsed JSON of ``path``; a file that is empty or not JSON raises one clear
    `CorruptStateFile` naming it (callers that can rebuild the file catch it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptStateFile(f"{what} {path} is corrupt ({'empty' if not path.stat().st_size else e}); "
                               "delete it (or use --overwrite) to continue") from None


# ---------------------------------------------------------------- exclusive locks


class FileLock:
    """An exclusive advisory lock (``flock``) on ``PATH.lock``, held while a writer appends to PATH.

    The lock file is left in place (removing it would race with a second writer opening it);
    the kernel drops the lock when the holder exits, so a killed run never leaves a stale lock.
    """

    def __init__(self, target: str | Path, what: str = "file"):
        self.target = Path(target)
        self.path = self.target.with_name(self.target.name + ".lock")
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "FileLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise SadEvalError(f"{self.target} is being written by another {self.what}"
                               + (f" (pid {holder})" if holder.isdigit() else "")
                               + "; wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
