"""One event at a time per target: a lease in the journal's storage, held while an event is applied.

Without it, a ``stolen`` and a ``found`` for one device racing through two Function instances each read the
device before the other changed it, and both completed: the theft was undone (issue 11, item 3). With it,
the outcome equals some sequential order of the two. The lease lives in the journal's store, so it holds
across instances; it expires (``ttl``) so a crashed holder cannot block a device forever, and a waiter that
cannot get it in ``wait`` seconds raises ``TargetBusy`` (transient: the queue redelivers, HTTP answers 503).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.errors import Transient
from shared.ports import Journal

DEFAULT_TTL = 60.0  # seconds; far longer than a single-device event takes, far shorter than a crashed
# delivery stays invisible (10 min), so its redelivery never waits for a dead holder
DEFAULT_WAIT = 15.0  # seconds a delivery waits for the lease before it is handed back for redelivery
_POLL = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)


class TargetBusy(Transient):
    """Another event on the same target holds the lease: try again later."""


@contextmanager
def held(journal: Journal, target: str, *, ttl: float = DEFAULT_TTL, wait: float = DEFAULT_WAIT,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    """Hold ``target``'s lease for the ``with`` block; yields the holder token."""
    holder = uuid.uuid4().hex
    deadline = clock() + wait
    attempt = 0
    while not journal.claim_target(target, holder, ttl):
        if clock() >= deadline:
            raise TargetBusy(f"another event on {target} is being applied", retry_after=5.0)
        sleep(_POLL[min(attempt, len(_POLL) - 1)])
        attempt += 1
    try:
        yield holder
    finally:
        journal.release_target(target, holder)
