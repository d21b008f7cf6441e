"""Per-session server state, bounded: idle sessions expire, and the oldest go past a cap."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable


@dataclass
class Session:
    goal_index: int
    last_seen: float
    done: bool = False
    reward: float | None = None


class SessionStore:
    """LRU map session id -> Session; thread-safe. `open` creates, `get` only looks up."""

    def __init__(self, goal_for: Callable[[str], int], max_sessions: int = 10_000, ttl_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        self._goal_for = goal_for
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _expire(self, now: float) -> None:
        # the front is the least recently seen, so stop at the first live one
        while self._items:
            sid, s = next(iter(self._items.items()))
            if now - s.last_seen <= self.ttl_s:
                break
            self._items.popitem(last=False)

    def open(self, sid: str) -> Session:
        """The session, created on first visit (raises what `goal_for` raises for a bad id)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            s = self._items.get(sid)
            if s is None:
                s = Session(self._goal_for(sid), now)
                self._items[sid] = s
                while len(self._items) > self.max_sessions:
                    self._items.popitem(last=False)
            s.last_seen = now
            self._items.move_to_end(sid)
            return s

    def get(self, sid: str) -> Session | None:
        with self._lock:
            now = self._clock()
            self._expire(now)
            s = self._items.get(sid)
            if s is not None:
                s.last_seen = now
                self._items.move_to_end(sid)
            return s
