"""One event at a time per target: a lease in the journal's storage, held while an event is applied.

Without it, a ``stolen`` and a ``found`` for one device racing through two Function instances each read the
device before the other changed it, and both completed: the theft was undone (issue 11, item 3). With it,
the outcome equals some sequential order of the two. The lease lives in the journal's store, so it holds
across instances; it expires (``ttl``) so a crashed holder cannot block a device forever, and a waiter that
cannot get it in ``wait`` seconds raises ``TargetBusy`` (transient: the queue redelivers, HTTP answers 503).

Renewal (docs/reliability.md, "lease renewal"). A group purge in process can run far longer than ``ttl``
(S1 allows 100 identity operations a minute per hub: a 10,000-device group takes over an hour), so a held
lease is renewed every ``ttl / 3`` and **fenced**: ``Lease.check`` raises ``LeaseLost`` once another holder
took the target, or once ``ttl`` passed since the last renewal that succeeded (after that another instance
may legitimately have taken it, even if it gave it back since). The purge checks before every bulk call and
every job, so it stops before it writes anything without the lease.

Two things renew, both through ``Lease.beat`` (renews only when due, so they never double the writes):

* a daemon thread started by ``held`` — the one that matters for blocking calls nothing can interrupt (an
  import job that runs for minutes, an SDK call retrying, a DPS page read);
* the purge itself, around every throttle wait (``guarded_sleep`` cuts a long wait into ``ttl / 3`` slices
  and beats between them) — that is where long purges spend their time, and it lets tests drive renewal
  with a fake clock, deterministically, where a thread on wall time could not.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.errors import Transient
from shared.ports import Journal

log = logging.getLogger(__name__)

DEFAULT_TTL = 60.0  # seconds; far longer than a single-device event takes, far shorter than a crashed
# delivery stays invisible (10 min), so its redelivery never waits for a dead holder
DEFAULT_WAIT = 15.0  # seconds a delivery waits for the lease before it is handed back for redelivery
RENEW_FRACTION = 3  # renew every ttl / 3: two renewals may fail (a storage hiccup) before the lease lapses
_POLL = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TargetBusy(Transient):
    """Another event on the same target holds the lease: try again later."""


class LeaseLost(Transient):
    """The lease was taken over or lapsed while this delivery held it: it stops before writing anything
    more; the redelivery waits for the lease and resumes from the journal (transient on purpose)."""


class Lease:
    """A held per-target lease: ``beat`` renews it when due, ``check`` fences writes on it."""

    def __init__(self, journal: Journal, target: str, holder: str, ttl: float, clock: Clock) -> None:
        self.journal, self.target, self.holder, self.ttl, self.clock = journal, target, holder, ttl, clock
        self.interval = ttl / RENEW_FRACTION
        self.renewed_at = clock()  # the claim that gave us the lease was made just before
        self.renewals = 0
        self._lost: str | None = None
        self._closed = False
        self._lock = threading.Lock()

    def beat(self) -> None:
        """Renew when ``interval`` passed since the last renewal; never after ``close`` or a loss."""
        with self._lock:
            if self._closed or self._lost or self.clock() - self.renewed_at < self.interval:
                return
            if self._expired():
                self._lost = f"not renewed for {self.ttl:g} s"
                return
            self._renew()

    def _renew(self) -> None:
        started = self.clock()  # the journal's expiry is at least this + ttl: fence from here
        try:
            kept = self.journal.claim_target(self.target, self.holder, self.ttl)
        except Transient as exc:  # the next beat tries again; check() fences if none succeeds in time
            log.warning("lease on %s: renewal failed, will retry: %s", self.target, exc)
            return
        if kept:
            self.renewed_at, self.renewals = started, self.renewals + 1
        else:
            self._lost = "another holder took it over"

    def _expired(self) -> bool:
        return self.clock() - self.renewed_at >= self.ttl

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the lease is still ours: call it right before a write."""
        with self._lock:
            if not self._lost and self._expired():
                self._lost = f"not renewed for {self.ttl:g} s"
            lost = self._lost
        if lost:
            raise LeaseLost(f"lease on {self.target} lost ({lost}); stopped before the next change, "
                            "the redelivery resumes from the journal", retry_after=5.0)

    def close(self) -> None:
        """No renewal after this returns (a renewal in flight finishes first: it holds the lock)."""
        with self._lock:
            self._closed = True


_current: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("unprovision_lease", default=None)


def current() -> Lease | None:
    """The lease ``held`` holds in this context: the group purge fences its writes on it (the step runner
    between the engine and the purge need not carry it)."""
    return _current.get()


def guarded_sleep(held_lease: Lease | None, sleep: Sleep) -> Sleep:
    """``sleep`` in slices of at most ``interval``, beating between them, and checking the lease after."""
    if held_lease is None:
        return sleep

    def wait(seconds: float) -> None:
        left = seconds
        while left > 0:
            piece = min(left, held_lease.interval)
            sleep(piece)
            left -= piece
            held_lease.beat()
        held_lease.check()

    return wait


def _renew_in_background(held_lease: Lease, stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(held_lease.interval / 2):  # beat is a no-op until due: half keeps it timely
            held_lease.beat()

    thread = threading.Thread(target=loop, name=f"lease-{held_lease.target}", daemon=True)
    thread.start()
    return thread


@contextmanager
def held(journal: Journal, target: str, *, ttl: float = DEFAULT_TTL, wait: float = DEFAULT_WAIT,
         sleep: Sleep = time.sleep, clock: Clock = time.monotonic,
         renew_in_background: bool = True) -> Iterator[Lease]:
    """Hold ``target``'s lease for the ``with`` block, renewed until it ends; yields the ``Lease``."""
    holder = uuid.uuid4().hex
    deadline = clock() + wait
    attempt = 0
    while not journal.claim_target(target, holder, ttl):
        if clock() >= deadline:
            raise TargetBusy(f"another event on {target} is being applied", retry_after=5.0)
        sleep(_POLL[min(attempt, len(_POLL) - 1)])
        attempt += 1
    held_lease = Lease(journal, target, holder, ttl, clock)
    stop = threading.Event()
    renewer = _renew_in_background(held_lease, stop) if renew_in_background else None
    token = _current.set(held_lease)
    try:
        yield held_lease
    finally:
        _current.reset(token)
        stop.set()
        held_lease.close()  # waits for a renewal in flight, so none lands after the release below
        if renewer is not None:
            renewer.join(timeout=1.0)
        journal.release_target(target, holder)
