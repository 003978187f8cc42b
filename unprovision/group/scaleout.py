"""Scale out: a group step's batches go through the work queue, each recorded in the journal first.

Emission (``emit``): the engine, holding the group event, claims the next emission run of the step
(``Journal.start_emission``: one writer wins, so duplicate deliveries do not emit twice), records every
batch with its device set (``BatchRecord``, state ``emitted``), marks the run recorded, then sends one
work message per batch naming only ``(eventId, stepIndex, run, batch)``.

Application (``apply_batch``): the work-queue function reads the batch the message names from the journal
and applies exactly its device set: a forged or stale message cannot name devices of its own. The batch
settles once (``applied`` or ``failed``; ``shared.lifecycle.BATCH_TRANSITIONS``): a redelivered message
changes nothing and never rewrites the counts. Deliveries of one batch at once (the queue's at-least-once
delivery, or a re-send racing the original) are serialised by a lease on the batch (``batch_lease_key``, the
journal's target leases): the one that gets it applies, the others return at once without a call, because
the holder's own message is redelivered if the holder dies. On the message's last delivery a transient
failure settles the batch ``failed`` instead of letting it go to the poison queue silently.

Completion (``complete_if_settled``): when no batch of the run is still ``emitted``, the group step gets its
final record and the event finishes ``completed``, or ``failed`` with the devices left over; re-sending the
event resumes exactly those (``resume``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import FieldError, HubNotConfigured, Rejected, Transient, UnprovisionError
from shared.lifecycle import BatchState, EmissionState, EventStatus, IllegalTransition
from shared.plan import StepKind, StepOutcome
from shared.ports import (
    BatchRecord,
    DeviceRegistries,
    Journal,
    Notifier,
    ProvisioningService,
    RateLimiter,
    StepRecord,
    Tally,
    WorkQueue,
)
from unprovision.engine import lease
from unprovision.group.batches import ACTIONS, bulk_call, iter_batches
from unprovision.outcomes import publish_recorded
from unprovision.throttle import Sleep

log = logging.getLogger(__name__)

MESSAGE_KEYS = ("eventId", "stepIndex", "run", "batch")


@dataclass(frozen=True)
class BatchRef:
    """What a work message says: which recorded batch to apply. Nothing else is taken from it."""

    event_id: str
    step_index: int
    run: int
    number: int

    def to_message(self) -> dict[str, Any]:
        return {"eventId": self.event_id, "stepIndex": self.step_index, "run": self.run, "batch": self.number}

    @classmethod
    def from_message(cls, message: Any) -> BatchRef:
        """Validate a work message; anything but the four keys with their types is ``Rejected``."""
        if not isinstance(message, dict):
            raise Rejected([FieldError("$", "must be a JSON object")], "invalid work batch")
        errors = [FieldError(k, "not a field of a work message") for k in message if k not in MESSAGE_KEYS]
        event_id = message.get("eventId")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
            errors.append(FieldError("eventId", "must be a string of 1-128 characters"))
        for name in MESSAGE_KEYS[1:]:
            value = message.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append(FieldError(name, "must be a whole number >= 0"))
        if errors:
            raise Rejected(errors, "invalid work batch")
        return cls(str(event_id), message["stepIndex"], message["run"], message["batch"])


@dataclass(frozen=True)
class Group:
    """The group step being scaled out."""

    event_id: str
    group_id: str
    kind: StepKind
    step_index: int


def emit(group: Group, *, dps: ProvisioningService, journal: Journal, queue: WorkQueue,
         page_size: int = 100) -> int | None:
    """Record and send the step's batches once; returns how many, or None when another writer emits.

    A run left ``emitting`` (its writer died while recording) is superseded by a new run; a recorded run is
    not emitted again, its unsettled batches are re-sent (a crash may have come before they were sent)."""
    latest = journal.latest_emission(group.event_id, group.step_index)
    if latest is not None and latest.state == EmissionState.RECORDED:
        return send_unsettled(group, latest.run, journal=journal, queue=queue)
    run = latest.run + 1 if latest is not None else 1
    if not journal.start_emission(group.event_id, group.step_index, run):
        return None
    count = 0
    for hub, ids in iter_batches(dps, group.group_id, page_size):
        count += 1
        batch = BatchRecord(group.step_index, run, count, hub, ACTIONS[group.kind], tuple(ids))
        journal.record_batch(group.event_id, batch)
    journal.end_emission(group.event_id, group.step_index, run, count)
    return send_unsettled(group, run, journal=journal, queue=queue)


def send_unsettled(group: Group, run: int, *, journal: Journal, queue: WorkQueue) -> int:
    """One message per batch of the run still ``emitted`` (duplicates are harmless: a batch settles once)."""
    batches = journal.batches(group.event_id, group.step_index, run)
    for batch in batches:
        if batch.state == BatchState.EMITTED:
            queue.send(BatchRef(group.event_id, group.step_index, run, batch.number).to_message())
    return len(batches)


def reopen_failed(journal: Journal, event_id: str, step_index: int) -> int:
    """Put the failed batches of the latest run back to ``emitted`` (``emit`` then sends them); how many."""
    latest = journal.latest_emission(event_id, step_index)
    if latest is None or latest.state != EmissionState.RECORDED:
        return 0
    again = [b for b in journal.batches(event_id, step_index, latest.run) if b.state == BatchState.FAILED]
    for batch in again:
        journal.settle_batch(event_id, replace(batch, state=BatchState.EMITTED, tally=Tally(), error=None))
    return len(again)


def has_failed_batches(journal: Journal, event_id: str, step_index: int) -> bool:
    latest = journal.latest_emission(event_id, step_index)
    if latest is None or latest.state != EmissionState.RECORDED:
        return False
    return any(b.state == BatchState.FAILED for b in journal.batches(event_id, step_index, latest.run))


def find_batch(ref: BatchRef, journal: Journal) -> BatchRecord:
    """The recorded batch a message names; ``Rejected`` when the event never emitted it."""
    for batch in journal.batches(ref.event_id, ref.step_index, ref.run):
        if batch.number == ref.number:
            return batch
    raise Rejected([FieldError("batch", "the event emitted no such batch")], "unknown work batch")


def batch_lease_key(ref: BatchRef) -> str:
    """The lease one batch is applied under. ``/`` appears in no device or group ID (docs/azure-behaviour.md
    §2), so this key never collides with the lease of an event's target. Lease keys are not case-sensitive
    (target IDs are not) but eventIds are: the eventId goes in as hex, so the batches of ``Ev-1`` and
    ``ev-1`` never share a lease (a delivery that finds its lease busy returns without applying)."""
    return f"batch/{ref.event_id.encode().hex()}/{ref.step_index}/{ref.run}/{ref.number}"


def apply_batch(ref: BatchRef, *, registries: DeviceRegistries, journal: Journal, limiter: RateLimiter,
                notifier: Notifier | None, last_delivery: bool, sleep: Sleep = time.sleep) -> None:
    """Apply the batch ``ref`` names, settle it once, finish the event when it was the last.

    Raises ``Transient`` for redelivery unless this is the message's last delivery; raises ``Rejected`` for a
    message that names no recorded batch of an event that exists."""
    record = journal.get(ref.event_id)
    if record is None:
        raise Rejected([FieldError("eventId", "no such event")], "unknown work batch")
    find_batch(ref, journal)
    try:
        with lease.held(journal, batch_lease_key(ref), wait=0.0) as batch_lease:
            _apply_claimed(ref, registries=registries, journal=journal, limiter=limiter,
                           last_delivery=last_delivery, sleep=lease.guarded_sleep(batch_lease, sleep))
    except lease.TargetBusy:
        log.info("batch %s/%s of %s is being applied by another delivery", ref.run, ref.number, ref.event_id)
        return
    complete_if_settled(journal, ref.event_id, ref.step_index, notifier)


def _apply_claimed(ref: BatchRef, *, registries: DeviceRegistries, journal: Journal, limiter: RateLimiter,
                   last_delivery: bool, sleep: Sleep) -> None:
    """Under the batch's lease: read the batch again (a delivery that held the lease just before may have
    settled it), apply it unless it is settled, superseded or its event finished."""
    record = journal.get(ref.event_id)
    batch = find_batch(ref, journal)
    latest = journal.latest_emission(ref.event_id, ref.step_index)
    current = latest is not None and latest.run == ref.run
    if record is None or record.status != EventStatus.IN_PROGRESS or not current \
            or batch.state != BatchState.EMITTED:
        return  # finished, superseded or settled already: this delivery has nothing left to do
    try:
        tally = bulk_call(registries.for_hub(batch.hub), batch.action, list(batch.device_ids),
                          limiter=limiter, sleep=sleep)
    except Transient as exc:
        if not last_delivery:
            raise
        failed = Tally(failed=len(batch.device_ids))
        _settle(journal, ref.event_id, batch, failed, f"gave up after the last delivery: {exc}")
    except (HubNotConfigured, UnprovisionError) as exc:
        failed = Tally(failed=len(batch.device_ids))
        _settle(journal, ref.event_id, batch, failed, f"{type(exc).__name__}: {exc}")
    else:
        _settle(journal, ref.event_id, batch, tally, None)


def _settle(journal: Journal, event_id: str, batch: BatchRecord, tally: Tally, error: str | None) -> None:
    state = BatchState.FAILED if tally.failed else BatchState.APPLIED
    if not journal.settle_batch(event_id, replace(batch, state=state, tally=tally, error=error)):
        log.info("batch %s/%s of %s was settled by another delivery", batch.run, batch.number, event_id)


@dataclass(frozen=True)
class Progress:
    """Batches of the latest run: settled so far, and how many were emitted (None while emitting)."""

    settled: int
    expected: int | None
    tally: Tally
    failed_batches: int


def progress(journal: Journal, event_id: str, step_index: int) -> Progress | None:
    """None when the step was never scaled out."""
    latest = journal.latest_emission(event_id, step_index)
    if latest is None:
        return None
    if latest.state != EmissionState.RECORDED:
        return Progress(0, None, Tally(), 0)
    batches = journal.batches(event_id, step_index, latest.run)
    settled = [b for b in batches if b.state != BatchState.EMITTED]
    total = Tally()
    for batch in settled:
        total = total + batch.tally
    failed = sum(1 for b in settled if b.state == BatchState.FAILED)
    return Progress(len(settled), latest.batches, total, failed)


def complete_if_settled(journal: Journal, event_id: str, step_index: int, notifier: Notifier | None) -> bool:
    """Finish the event once no batch of the latest run is unsettled; True for the one caller that did.

    Two workers settling the last batches at once may both get here: the transition table lets only one
    move the event out of ``in_progress`` (``IllegalTransition`` for the other, which then stays quiet)."""
    record = journal.get(event_id)
    state = progress(journal, event_id, step_index)
    if record is None or record.status != EventStatus.IN_PROGRESS or state is None:
        return False
    if state.expected is None or state.settled < state.expected:
        return False
    step = next((s for s in record.steps if s.index == step_index), None)
    kind = step.kind if step is not None else ""
    total = state.tally
    error = (f"{total.failed} devices in {state.failed_batches} batches not purged; re-send the event to "
             "resume them") if total.failed else None
    outcome = StepOutcome.FAILED if total.failed else (StepOutcome.DONE if total.changed
                                                       else StepOutcome.ALREADY_DONE)
    try:
        journal.finish(event_id, EventStatus.FAILED if total.failed else EventStatus.COMPLETED, error)
    except IllegalTransition:
        return False
    # Only the worker that finished the event records the step's final attempt: recorded before the finish,
    # two workers settling the last batches at once each appended a "done" attempt (docs/reliability.md).
    journal.record_step(event_id, StepRecord(
        step_index, kind, record.target, outcome, after=f"batches {state.expected}: {total.summary()}",
        error=error))
    final = journal.get(event_id)
    if notifier is not None and final is not None:
        publish_recorded(notifier, final)
    return True
