"""The engine's side of storm coalescing: join a hub's pending set, or go the direct way at once.

A single-device event's last hub step (disable or delete the identity) joins its hub's pending set when
steps already wait there or the hub's shared budget has no token left now; otherwise it is applied at
once, as before, so a single event at a normal rate waits for nothing. Its DPS steps always run at once:
the device can never re-provision while its hub step waits. The step is journaled ``skipped`` with
``PENDING_AFTER`` before it joins, so a redelivery knows where it is; a flush (``unprovision.storm.flush``)
records its real outcome and finishes the event.

Order on one device: before a later event on the same target is planned, ``settle_earlier`` applies any
earlier event's step that still waits (the target's lease is held, so nothing else is planned meanwhile),
so a ``found`` never re-enables an identity that a waiting ``lost`` then disables. A step already taken by
a running flush is waited for instead (``EarlierStepInFlight`` when that takes too long).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import Transient
from shared.lifecycle import EventStatus, is_finished
from shared.plan import Step, StepOutcome, plan_from_dict
from shared.ports import (
    DeviceRegistries,
    EventRecord,
    Journal,
    Notifier,
    PendingHubStep,
    PendingHubSteps,
    RateLimiter,
    WorkQueue,
)
from unprovision.group.jobs import ImportJobs
from unprovision.storm import settle
from unprovision.throttle import Sleep

PENDING_AFTER = "pending in the hub's set: a flush applies it"
FLUSH_KEY = "flushHub"
DIRECT_CLAIM = "direct-"  # claims made by an event settling an earlier one (under the target's lease)
FLUSH_CLAIM = "flush-"  # claims made by a flush (under the hub's flush lease)
DEFAULT_JOB_THRESHOLD = 50  # docs/engine.md, "Storms": where a job beats per-device calls on S1
REQUEST_STALE = 60.0  # seconds after which a standing flush request is sent again (its sender may be dead)
EARLIER_WAIT = 300.0  # seconds a later event waits for a flush that holds an earlier step of its device
_POLL = 2.0
_ADD_TRIES = 3


class EarlierStepInFlight(Transient):
    """An earlier event's hub step on this device is in a flush still running: try again later."""


@dataclass(frozen=True)
class Storm:
    """What coalescing needs; ``wiring`` sets it when the app has a work queue and journal storage."""

    pending: PendingHubSteps
    queue: WorkQueue
    limiter: RateLimiter
    job_threshold: int = DEFAULT_JOB_THRESHOLD
    import_jobs: ImportJobs | None = None
    sleep: Sleep = time.sleep
    clock: Callable[[], float] = time.monotonic
    earlier_wait: float = EARLIER_WAIT


def flush_lease_key(hub: str) -> str:
    """The lease a hub's flush holds. ``/`` is in no device or group ID, so it never meets a target's."""
    return f"flush/{hub.lower()}"


def flush_message(hub: str) -> dict[str, str]:
    return {FLUSH_KEY: hub}


def coalescible(step: Step, is_last: bool) -> bool:
    """Only an identity revocation that ends its plan waits: a re-enable (``found``) never does."""
    return is_last and step.kind in settle.ACTION_OF and bool(step.hub)


def entry_for(event_id: str, index: int, step: Step) -> PendingHubStep:
    return PendingHubStep(hub=str(step.hub), device_id=step.target, event_id=event_id, step_index=index,
                          action=settle.ACTION_OF[step.kind], reason=step.params.get("statusReason"))


def reads_identity(storm: Storm, hub: str) -> bool:
    """Whether the planner reads a revoked device's hub identity now. Not while steps wait in the hub's set
    (the step will wait there too, and a job needs no read), so a storm costs its hub nothing per event.
    Not when the hub's budget cannot pay the read now either: the step then joins the set (``should_join``
    finds the budget spent too). Reading anyway would hold the event on the hub's 429s until the budget had
    refilled, so events would start only as fast as the hub answers and the bucket would never run dry:
    the closed loop the 3,000-event storm benchmark showed (docs/benchmarks.md, "Storm"). Otherwise the
    read is paid from the budget, so the bucket sees what the hub counts. A step whose identity was not
    read still applies correctly: a missing identity reports already done."""
    if storm.pending.has_waiting(hub):
        return False
    return storm.limiter.acquire(hub, 1) <= 0


def should_join(storm: Storm, hub: str) -> bool:
    """Join when steps already wait in the hub's set (they go first), or when the budget cannot pay the
    write now. The token taken when there is one pays for the direct call; when there is none, the
    reservation is one op the step will not need (it goes in a job or a flush's budgeted bulk call)."""
    return storm.pending.has_waiting(hub) or storm.limiter.acquire(hub, 1) > 0


def join(storm: Storm, entry: PendingHubStep, journal: Journal) -> PendingHubStep:
    """Add the step to its hub's set and make sure a flush will read it. A standing flush request means a
    message is on its way and its flush has not read the set yet (a flush clears the request before it
    reads), so only the step that makes the request sends one: a storm sends a message per flush, not one
    per event."""
    stored = _add(storm, entry, journal)
    if storm.pending.request_flush(entry.hub, REQUEST_STALE):
        storm.queue.send(flush_message(entry.hub))
    return stored


def _add(storm: Storm, entry: PendingHubStep, journal: Journal) -> PendingHubStep:
    """Add ``entry``; an entry of another, finished event found in its place is removed first. A flush
    killed after finishing its events but before removing their entries leaves them behind; the set holds
    one entry a device, so keeping that one would leave this event's step unapplied for good."""
    for _ in range(_ADD_TRIES):
        stored = storm.pending.add(entry)
        if stored.event_id == entry.event_id:
            return stored
        if not event_finished(journal, stored.event_id):
            # settle_earlier applied every earlier step of this device it could; this one is still in a flush
            raise EarlierStepInFlight(f"event {stored.event_id}'s hub step on {stored.device_id} is in a "
                                      "flush still running", retry_after=10.0)
        storm.pending.remove([stored])  # conditional: a flush removing it meanwhile is fine too
    raise EarlierStepInFlight(f"the set's entry for {entry.device_id} kept changing", retry_after=2.0)


def event_finished(journal: Journal, event_id: str) -> bool:
    """Whether the event of a set's entry is finished (or gone from the journal), so the entry is stale."""
    record = journal.get(event_id)
    return record is None or is_finished(record.status)


def is_waiting(record: EventRecord | None, index: int) -> bool:
    """Whether the event's step ``index`` stands as joined to a pending set."""
    if record is None:
        return False
    step = next((s for s in record.steps if s.index == index), None)
    return step is not None and step.outcome == StepOutcome.SKIPPED.value and step.after == PENDING_AFTER


@dataclass(frozen=True)
class Apply:
    """What settling a step needs besides the storm: the hubs, the journal, where outcomes go."""

    registries: DeviceRegistries
    journal: Journal
    notifier: Notifier | None


def settle_earlier(storm: Storm, target: str, ports: Apply) -> int:
    """Apply every earlier event's hub step on ``target`` that still waits, finishing those events; how
    many. Call it holding ``target``'s lease, before planning a new event on it."""
    settled = 0
    for record in ports.journal.history(target):
        if record.status != EventStatus.IN_PROGRESS or not record.plan:
            continue
        plan = plan_from_dict(record.plan)
        for index, step in enumerate(plan.steps):
            if is_waiting(record, index) or _recorded_unfinished(record, index):
                settled += _settle_one(storm, entry_for(record.event_id, index, step), ports)
    return settled


def _recorded_unfinished(record: EventRecord, index: int) -> bool:
    """A step a flush (or a direct settle) recorded whose event it did not finish: killed in between, it
    leaves the entry in the set, and the next flush would apply it again after this later event."""
    step = next((s for s in record.steps if s.index == index), None)
    return step is not None and settle.applied_here(step.after)


def _settle_one(storm: Storm, wanted: PendingHubStep, ports: Apply) -> int:
    deadline = storm.clock() + storm.earlier_wait
    nudged = False
    while True:
        entry = storm.pending.get(wanted.hub, wanted.device_id)
        if entry is not None and entry.event_id != wanted.event_id:
            entry = None  # another event's step on the device: this event's own never joined (a crash)
        if entry is None or entry.claim is None or entry.claim.startswith(DIRECT_CLAIM):
            return _apply_now(storm, wanted if entry is None else entry, ports)
        if storm.clock() >= deadline:
            raise EarlierStepInFlight(f"event {wanted.event_id}'s hub step on {wanted.device_id} is in a "
                                      "flush still running", retry_after=10.0)
        if not nudged:  # the flush holding it may have died: make sure one runs
            storm.queue.send(flush_message(wanted.hub))
            nudged = True
        storm.sleep(_POLL)
        record = ports.journal.get(wanted.event_id)
        if record is None or record.status != EventStatus.IN_PROGRESS:
            return 0  # the flush finished it


def _apply_now(storm: Storm, entry: PendingHubStep, ports: Apply) -> int:
    """Take the entry (if it is in the set) and apply it here, paid from the hub's budget."""
    if entry.etag is not None:
        taken = storm.pending.claim([entry], f"{DIRECT_CLAIM}{uuid.uuid4().hex}")
        if not taken:
            raise EarlierStepInFlight(f"event {entry.event_id}'s hub step on {entry.device_id} was taken "
                                      "meanwhile", retry_after=2.0)
        entry = taken[0]
    hub = settle.Hub(ports.registries.for_hub(entry.hub), storm.limiter, storm.sleep)
    results = settle.apply_steps([entry], hub)
    if entry.etag is not None:  # before finishing: a flush leaves direct claims alone, so a settle killed
        storm.pending.remove([entry])  # between the two would strand the entry of a finished event; killed
    # here instead, the later event's redelivery settles the still unfinished one again (idempotently)
    return settle.finish_events([entry], results, journal=ports.journal, notifier=ports.notifier)
