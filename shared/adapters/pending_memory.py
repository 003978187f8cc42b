"""Pending hub steps in memory: the reference semantics of ``shared.ports.PendingHubSteps``.

``TablePendingHubSteps`` (pending_tables.py) must behave like this class; one contract test module
(tests/integration/test_pending_tables.py) runs against both. Entries are keyed by (hub lower-cased,
device ID as given: IoT Hub device IDs are case-sensitive); etags are counters, so every write changes
them and a write conditional on a stale etag is refused. Safe to share between threads.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from shared.ports import PendingHubStep

_Key = tuple[str, str]


def _key(hub: str, device_id: str) -> _Key:
    return hub.lower(), device_id


class InMemoryPendingHubSteps:
    """``PendingHubSteps`` over a dict guarded by one lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._entries: dict[_Key, PendingHubStep] = {}
        self._etags = itertools.count(1)
        self._requests: dict[str, float] = {}  # hub (lower-cased) -> when a flush was requested
        self._clock = clock

    def _stamp(self, step: PendingHubStep, claim: str | None) -> PendingHubStep:
        return replace(step, claim=claim, etag=str(next(self._etags)))

    def _current(self, step: PendingHubStep) -> PendingHubStep | None:
        """The stored entry if ``step`` still names it as read (same etag); else None."""
        stored = self._entries.get(_key(step.hub, step.device_id))
        if stored is None or step.etag is None or stored.etag != step.etag:
            return None
        return stored

    def add(self, step: PendingHubStep) -> PendingHubStep:
        key = _key(step.hub, step.device_id)
        with self._lock:
            existing = self._entries.get(key)
            if existing is not None:
                return existing
            stored = self._entries[key] = self._stamp(step, None)
            return stored

    def get(self, hub: str, device_id: str) -> PendingHubStep | None:
        with self._lock:
            return self._entries.get(_key(hub, device_id))

    def has_waiting(self, hub: str) -> bool:
        name = hub.lower()
        with self._lock:
            return any(k[0] == name and e.claim is None for k, e in self._entries.items())

    def entries(self, hub: str) -> Iterator[PendingHubStep]:
        name = hub.lower()
        with self._lock:
            found = [e for k, e in sorted(self._entries.items()) if k[0] == name]
        yield from found

    def claim(self, steps: Sequence[PendingHubStep], claim: str) -> list[PendingHubStep]:
        claimed: list[PendingHubStep] = []
        with self._lock:
            for step in steps:
                stored = self._current(step)
                if stored is not None:
                    taken = self._entries[_key(step.hub, step.device_id)] = self._stamp(stored, claim)
                    claimed.append(taken)
        return claimed

    def remove(self, steps: Sequence[PendingHubStep]) -> int:
        removed = 0
        with self._lock:
            for step in steps:
                if self._current(step) is not None:
                    del self._entries[_key(step.hub, step.device_id)]
                    removed += 1
        return removed

    def request_flush(self, hub: str, stale_after: float) -> bool:
        with self._lock:
            now = self._clock()
            standing = self._requests.get(hub.lower())
            if standing is not None and now - standing < stale_after:
                return False
            self._requests[hub.lower()] = now
            return True

    def clear_flush_request(self, hub: str) -> None:
        with self._lock:
            self._requests.pop(hub.lower(), None)
