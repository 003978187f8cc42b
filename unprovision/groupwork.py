"""Group scope at fleet scale: every device registered through a group, purged in its own hub.

The group's registration records are streamed page by page and partitioned by ``assigned_hub`` into
batches of ≤100 device IDs (the bulk-call limit). Memory stays bounded: at most ``max_in_flight + 1`` batches
per hub exist at once, because the stream waits while a hub has ``max_in_flight`` calls outstanding.

Two modes:
* in process (``purge_group``): bulk registry calls from a thread pool per hub, each call first reserving
  its device count from the hub's ``RateLimiter`` (bulk calls count per device against the registry budget).
* scale out (``emit_batches`` + ``apply_batch``): batches become ``WorkQueue`` messages, consumed by a
  queue-triggered function; the event completes when the journal holds a record for every emitted batch.
Journal bookkeeping of scale-out: see ``emit_batches`` and ``complete_if_done`` (and docs/engine.md).
In process, hubs holding many of the group's devices may take the import-job path instead
(``unprovision.groupjobs``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

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
    WorkQueue,
)
from unprovision.groupjobs import ImportJobs, identity_of, job_purge, job_runners
from unprovision.outcomes import TERMINAL, Outcome
from unprovision.throttle import InMemoryRateLimiter, Sleep, wait_for

BATCH_LIMIT = 100
ACTIONS = {StepKind.GROUP_DEVICES_DISABLED: "disable", StepKind.GROUP_DEVICES_DELETED: "delete"}
_THROTTLE_RETRIES = 3


@dataclass(frozen=True)
class Progress:
    """Reported after every bulk call: devices handled so far in ``hub`` (``total`` when known)."""

    hub: str
    done: int
    failed: int
    total: int | None = None


ProgressFn = Callable[[Progress], None]


@dataclass
class GroupWork:
    """How group-scope steps run. ``scale_out`` needs a ``queue``. In process, a hub with at least
    ``import_job_threshold`` devices of the group is purged by one import job from ``import_jobs(hub)``
    instead of throttled bulk calls (``unprovision.groupjobs``; a hub for which ``import_jobs`` returns None
    stays on the bulk path); scale-out mode does not use it."""

    limiter: RateLimiter = field(default_factory=InMemoryRateLimiter)
    sleep: Sleep = time.sleep
    max_in_flight: int = 2
    page_size: int = 100
    scale_out: bool = False
    queue: WorkQueue | None = None
    import_job_threshold: int | None = None
    import_jobs: ImportJobs | None = None


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


@dataclass(frozen=True)
class GroupResult:
    by_hub: dict[str, Tally]
    calls: int
    warnings: tuple[str, ...] = ()
    jobs: int = 0  # import jobs run (large hubs), not counted in ``calls``

    @property
    def total(self) -> Tally:
        result = Tally()
        for tally in self.by_hub.values():
            result = result + tally
        return result


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


class _HubLane:
    """One hub's executor with at most ``limit`` calls in flight; ``submit`` blocks when the lane is full."""

    def __init__(self, registry: DeviceRegistry, limit: int) -> None:
        self.registry = registry
        self.pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix=f"purge-{registry.hub}")
        self.slots = threading.BoundedSemaphore(limit)
        self.futures: list[Future[Tally]] = []

    def submit(self, fn: Callable[[], Tally]) -> None:
        self.slots.acquire()
        future = self.pool.submit(fn)
        future.add_done_callback(lambda _f: self.slots.release())
        self.futures.append(future)


def purge_group(event_id: str, group_id: str, kind: StepKind, *, dps: ProvisioningService,
                registries: DeviceRegistries, work: GroupWork, progress: ProgressFn | None = None,
                reason: str | None = None) -> GroupResult:
    """In-process mode: purge every identity of the group, hub by hub, throttled; re-raises the first
    transient failure after all started calls ended (a redelivery repeats the idempotent work)."""
    action = ACTIONS[kind]
    lanes: dict[str, _HubLane] = {}
    unknown: dict[str, int] = {}
    tallies: dict[str, Tally] = {}
    lock = threading.Lock()
    job_hubs = job_runners(dps, group_id, threshold=work.import_job_threshold, import_jobs=work.import_jobs,
                           page_size=work.page_size)

    def run(lane: _HubLane, hub: str, ids: list[str]) -> Tally:
        tally = bulk_call(lane.registry, action, ids, limiter=work.limiter, sleep=work.sleep, reason=reason)
        with lock:
            tallies[hub] = tallies.get(hub, Tally()) + tally
            if progress is not None:
                progress(Progress(hub, tallies[hub].done, tallies[hub].failed))
        return tally

    try:
        for hub, ids in iter_batches(dps, group_id, work.page_size):
            if hub in job_hubs:
                continue
            lane = lanes.get(hub) or _open_lane(hub, registries, work, lanes, unknown)
            if lane is None:
                unknown[hub] += len(ids)
                continue
            lane.submit(partial(run, lane, hub, ids))
    finally:
        for lane in lanes.values():
            lane.pool.shutdown(wait=True)
    for lane in lanes.values():
        for future in lane.futures:
            future.result()  # re-raise the first failure
    for hub, runner in job_hubs.items():
        counts = job_purge(dps, group_id, hub, runner, action, page_size=work.page_size, reason=reason)
        tallies[hub] = Tally(counts.changed, counts.unchanged, counts.failed)
        if progress is not None:
            progress(Progress(hub, tallies[hub].done, tallies[hub].failed))
    for hub, count in unknown.items():
        tallies[hub] = Tally(failed=count)
    warnings = tuple(f"hub {hub} is not configured: {n} devices not purged" for hub, n in unknown.items())
    return GroupResult(tallies, sum(len(lane.futures) for lane in lanes.values()), warnings, len(job_hubs))


def _open_lane(hub: str, registries: DeviceRegistries, work: GroupWork, lanes: dict[str, _HubLane],
               unknown: dict[str, int]) -> _HubLane | None:
    if hub in unknown:
        return None
    try:
        lanes[hub] = _HubLane(registries.for_hub(hub), max(1, work.max_in_flight))
    except HubNotConfigured:
        unknown[hub] = 0
        return None
    return lanes[hub]


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
