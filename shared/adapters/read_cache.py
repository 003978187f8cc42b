"""A small per-adapter cache of the last SDK model read per ID, so a read-modify-write can skip its read.

Why: a single-device event reads the enrollment and the hub identity while building the inventory, and the
status change right after used to read both again. The adapters now keep what ``get_enrollment`` /
``get_group`` / ``get`` read and hand it to the *next* mutation of that ID, which consumes it (``take``
pops) and sends the write with ``If-Match: <cached etag>``. That keeps the write as safe as a fresh read:
if anything changed in between, the service answers 412 and the adapter falls back to its re-read-and-retry
path, so a stale cache can never overwrite a newer change.

Rules (see the adapters): only models carrying an etag are used (no etag would mean an unconditional
write); a cached model may only *justify a write*, never an "already done" answer (that needs a fresh
read, since no write would be there to catch staleness); every write or delete of an ID drops its entry.
Bounded (LRU, ``max_entries``) and short-lived (``max_age`` seconds on an injectable monotonic clock);
thread-safe, because one adapter instance serves every concurrent invocation of a Functions worker.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

DEFAULT_MAX_ENTRIES = 1_000
DEFAULT_MAX_AGE = 30.0  # seconds; longer only costs a 412 and a re-read, but keeps memory of idle IDs


class ReadCache:
    """LRU of ``key -> (read at, SDK model)``; ``take`` pops, so each cached read serves one write."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 0 or max_age < 0:
            raise ValueError("max_entries and max_age must not be negative")
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: Hashable, model: Any) -> None:
        """Remember ``model`` as the latest read of ``key`` (models without an etag are not kept)."""
        if self.max_entries == 0 or not getattr(model, "etag", None):
            self.discard(key)
            return
        with self._lock:
            self._entries[key] = (self._clock(), model)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def take(self, key: Hashable) -> Any | None:
        """Pop and return the cached model of ``key`` if it is younger than ``max_age``; else None."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return None
        at, model = entry
        return model if self._clock() - at < self.max_age else None

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` (after a write or delete of it)."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
