"""Group work in batches: the batch primitives both modes share, and the scale-out mode.

Shared by both modes (``unprovision.groupwork.purge_group`` in process, and scale out here): a group's
registration records are partitioned by ``assigned_hub`` into batches of ≤100 device IDs (``iter_batches``;
the bulk-call limit), each applied by one throttled bulk call (``bulk_call``) whose device counts make a
``Tally``.

Scale out (``emit_batches`` + ``apply_batch``): batches become ``WorkQueue`` messages, consumed by a
queue-triggered function; the event completes when the journal holds a record for every emitted batch
(``complete_if_done``). Journal bookkeeping: see the section comment below and docs/engine.md.

Split out of ``unprovision.groupwork``, which re-exports every public name here (callers import from
either module). This module does not import ``groupwork`` at run time, so the dependency is one way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import HubNotConfigured, Throttled
from shared.plan import StepKind, StepOutcome
from shared.ports import (
    BulkResult,
    DeviceRegistries,
    DeviceRegistry,
    EventRecord,
    Journal,
    Notifier,
    ProvisioningService,
    RateLimiter,
    StepRecord,
)
from unprovision.groupjobs import identity_of
from unprovision.outcomes import TERMINAL, Outcome
from unprovision.throttle import Sleep, wait_for

if TYPE_CHECKING:
    from unprovision.groupwork import GroupWork

BATCH_LIMIT = 100
ACTIONS = {StepKind.GROUP_DEVICES_DISABLED: "disable", StepKind.GROUP_DEVICES_DELETED: "delete"}
_THROTTLE_RETRIES = 3


@dataclass(frozen=True)
class Tally:
    changed: int = 0
    unchanged: int = 0
    failed: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.changed + other.changed, self.unchanged + other.unchanged,
                     self.failed + other.failed)

    @property
    def done(self) -> int:
        return self.changed + self.unchanged + self.failed

    def summary(self) -> str:
        return f"changed={self.changed} unchanged={self.unchanged} failed={self.failed}"


def tally_of(result: BulkResult) -> Tally:
    """A device the hub does not know counts as unchanged: an absent identity cannot connect, so the goal
    (no working identity) holds. Not pinned by a documented source; it is this app's reading."""
    absent = sum(1 for code in result.failed.values() if "DeviceNotFound" in code)
    return Tally(len(result.changed), len(result.unchanged) + absent, len(result.failed) - absent)


def bulk_call(registry: DeviceRegistry, action: str, device_ids: list[str], *, limiter: RateLimiter,
              sleep: Sleep, reason: str | None = None) -> Tally:
    """One throttled bulk call; a 429 despite the budget (another client spends it too) is retried a few
    times after its Retry-After, then surfaces so the host redelivers."""
    if not 0 < len(device_ids) <= BATCH_LIMIT:
        raise ValueError(f"a bulk call takes 1..{BATCH_LIMIT} devices, got {len(device_ids)}")
    for attempt in range(_THROTTLE_RETRIES + 1):
        wait_for(limiter, registry.hub, len(device_ids), sleep)
        try:
            if action == "delete":
                return tally_of(registry.bulk_delete(device_ids))
            return tally_of(registry.bulk_disable(device_ids, reason))
        except Throttled as exc:
            if attempt == _THROTTLE_RETRIES:
                raise
            sleep(exc.retry_after or 10.0)
    raise AssertionError("unreachable")


def iter_batches(
    dps: ProvisioningService, group_id: str, page_size: int = 100
) -> Iterator[tuple[str, list[str]]]:
    """(hub, ≤100 device IDs) in stream order; a hub's batch is yielded as soon as it is full, the rest at
    the end. Records without a hub or device ID (never assigned) have no identity to purge and are skipped."""
    buffers: dict[str, list[str]] = {}
    for record in dps.iter_group_registrations(group_id, page_size):
        hub, device_id = identity_of(record)
        if hub is None or device_id is None:
            continue
        buffer = buffers.setdefault(hub, [])
        buffer.append(device_id)
        if len(buffer) == BATCH_LIMIT:
            yield hub, buffers.pop(hub)
    for hub, buffer in buffers.items():
        yield hub, buffer


# ------------------------------------------------------------------------------------------------------
# Scale-out: batches through the work queue, completion tracked in journal step records. The journal keeps
# the latest attempt per step index, so each batch gets its own index: ``batch_index(i, k)``. The group
# step's own index ``i`` goes "emitting:{run}" -> "emitted:{run}:{n}" -> final "batches:{n}" (in ``before``).
# ``run`` numbers emission attempts; only batches of the run named by "emitted" count.
# ------------------------------------------------------------------------------------------------------

BOOKKEEPING = ("emitting:", "emitted:", "batch:")
BATCH_BASE = 100_000  # batch k of the group step at plan index i is journaled at (i + 1) * BATCH_BASE + k
MAX_SCALE_OUT_INDEX = 8  # keeps batch indices below 1,000,000 (the Table journal's six-digit index)
_RUN = re.compile(r"^(?:emitting|emitted):(\d+)")
_BATCH = re.compile(r"^batch:(\d+):(\d+)$")
_EMITTED = re.compile(r"^emitted:(\d+):(\d+)$")
_COUNTS = re.compile(r"changed=(\d+) unchanged=(\d+) failed=(\d+)")
_KIND_BY_ACTION = {action: kind for kind, action in ACTIONS.items()}


def batch_index(step_index: int, batch: int) -> int:
    return (step_index + 1) * BATCH_BASE + batch


def emit_batches(event_id: str, group_id: str, kind: StepKind, index: int, *, dps: ProvisioningService,
                 journal: Journal, work: GroupWork, notifier: Notifier | None = None) -> int:
    """Send one message per (hub, ≤100 devices) batch; returns the number of batches sent."""
    if work.queue is None or index > MAX_SCALE_OUT_INDEX:
        raise ValueError("scale-out group work needs a work queue and a group step among the first 9")
    record = journal.get(event_id)
    current = next((s for s in (record.steps if record else ()) if s.index == index), None)
    previous = _RUN.match(current.before or "") if current else None
    run = int(previous.group(1)) + 1 if previous else 1
    _note(journal, event_id, index, kind, group_id, before=f"emitting:{run}",
          after="emitting batches to the work queue")
    count = 0
    for hub, ids in iter_batches(dps, group_id, work.page_size):
        count += 1
        work.queue.send({"eventId": event_id, "groupId": group_id, "hub": hub, "action": ACTIONS[kind],
                         "deviceIds": ids, "batch": count, "run": run, "stepIndex": index})
    _note(journal, event_id, index, kind, group_id, before=f"emitted:{run}:{count}",
          after=f"emitted {count} batches")
    complete_if_done(journal, event_id, index, notifier)
    return count


def _note(journal: Journal, event_id: str, index: int, kind: StepKind, group_id: str, *, before: str,
          after: str) -> None:
    journal.record_step(event_id, StepRecord(index, kind.value, group_id, StepOutcome.SKIPPED.value,
                                             before=before, after=after))


def apply_batch(batch: Mapping[str, Any], registries: DeviceRegistries, journal: Journal,
                throttle: RateLimiter, *, sleep: Sleep = time.sleep,
                notifier: Notifier | None = None) -> Tally:
    """Work-queue consumer: one throttled bulk call, its record, and the completion check.

    A redelivered batch repeats an idempotent bulk call and re-records the same batch index (latest wins).
    Transient errors propagate so the queue redelivers; an unconfigured hub fails the batch's devices.
    """
    event_id, hub, ids = str(batch["eventId"]), str(batch["hub"]), [str(i) for i in batch["deviceIds"]]
    kind = _KIND_BY_ACTION[str(batch["action"])]
    index, run, number = int(batch["stepIndex"]), int(batch["run"]), int(batch["batch"])
    record = journal.get(event_id)
    if record is None or record.status in TERMINAL:
        return Tally()  # unknown or finished event: nothing left to do for this message
    error = None
    try:
        registry = registries.for_hub(hub)
    except HubNotConfigured as exc:
        tally, error = Tally(failed=len(ids)), str(exc)
    else:
        tally = bulk_call(registry, str(batch["action"]), ids, limiter=throttle, sleep=sleep)
    journal.record_step(event_id, StepRecord(
        batch_index(index, number), kind.value, str(batch["groupId"]), _outcome(tally).value, hub=hub,
        before=f"batch:{run}:{number}", after=tally.summary(), error=error))
    complete_if_done(journal, event_id, index, notifier)
    return tally


def _outcome(tally: Tally) -> StepOutcome:
    if tally.failed:
        return StepOutcome.FAILED
    return StepOutcome.DONE if tally.changed else StepOutcome.ALREADY_DONE


def _batches(record: EventRecord, index: int) -> tuple[dict[int, Tally], int | None]:
    """Batch tallies of the current run, and the number of batches expected (None while emitting)."""
    current = next((s for s in record.steps if s.index == index), None)
    emitted = _EMITTED.match(current.before or "") if current else None
    if emitted is None:
        return {}, None
    run, expected = emitted.group(1), int(emitted.group(2))
    low, high = batch_index(index, 0), batch_index(index + 1, 0)
    tallies: dict[int, Tally] = {}
    for s in record.steps:
        m, counts = _BATCH.match(s.before or ""), _COUNTS.search(s.after or "")
        if low < s.index < high and m and m.group(1) == run and counts:
            tallies[int(m.group(2))] = Tally(*(int(c) for c in counts.groups()))
    return tallies, expected


def batch_progress(record: EventRecord, index: int) -> tuple[int, int | None]:
    """(batches recorded, batches expected or None while emission runs) for the group step ``index``."""
    tallies, expected = _batches(record, index)
    return len(tallies), expected


def complete_if_done(journal: Journal, event_id: str, index: int, notifier: Notifier | None) -> bool:
    """Finish the event once every emitted batch has a record. Two workers finishing at once may both
    write the (identical) final record; finishing is idempotent in effect."""
    record = journal.get(event_id)
    if record is None or record.status in TERMINAL:
        return False
    tallies, expected = _batches(record, index)
    if expected is None or len(tallies) < expected:
        return False
    total = Tally()
    for tally in tallies.values():
        total = total + tally
    group_step = next(s for s in record.steps if s.index == index)
    error = f"{total.failed} devices not purged" if total.failed else None
    journal.record_step(event_id, StepRecord(
        index, group_step.kind, group_step.target, _outcome(total).value, before=f"batches:{expected}",
        after=f"batches {expected}/{expected}: {total.summary()}", error=error))
    journal.finish(event_id, "failed" if total.failed else "completed", error)
    final = journal.get(event_id)
    if notifier is not None and final is not None:
        notifier.publish(Outcome.from_record(final).to_dict())
    return True
