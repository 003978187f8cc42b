"""Group scope at fleet scale: every device registered through a group, purged in its own hub.

The group's registration records are streamed page by page and partitioned by ``assigned_hub`` into
batches of ≤100 device IDs (the bulk-call limit). Memory stays bounded: at most ``max_in_flight + 1`` batches
per hub exist at once, because the stream waits while a hub has ``max_in_flight`` calls outstanding.

Two modes:
* in process (``purge_group``): bulk registry calls from a thread pool per hub, each call first reserving
  its device count from the hub's ``RateLimiter`` (bulk calls count per device against the registry budget).
* scale out (``emit_batches`` + ``apply_batch``, in ``unprovision.groupscale``): batches become
  ``WorkQueue`` messages, consumed by a queue-triggered function; the event completes when the journal holds
  a record for every emitted batch.
In process, hubs holding many of the group's devices may take the import-job path instead
(``unprovision.groupjobs``).

The batch primitives (``Tally``, ``bulk_call``, ``iter_batches``) and the scale-out mode live in
``unprovision.groupscale``; every name is re-exported here (``__all__``), so callers may import from either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from shared.errors import HubNotConfigured
from shared.plan import StepKind
from shared.ports import DeviceRegistries, DeviceRegistry, ProvisioningService, RateLimiter, WorkQueue
from unprovision.groupjobs import ImportJobs, job_purge, job_runners
from unprovision.groupscale import (
    _BATCH,
    _COUNTS,
    _EMITTED,
    _KIND_BY_ACTION,
    _RUN,
    _THROTTLE_RETRIES,
    ACTIONS,
    BATCH_BASE,
    BATCH_LIMIT,
    BOOKKEEPING,
    MAX_SCALE_OUT_INDEX,
    Tally,
    _batches,
    _note,
    _outcome,
    apply_batch,
    batch_index,
    batch_progress,
    bulk_call,
    complete_if_done,
    emit_batches,
    iter_batches,
    tally_of,
)
from unprovision.throttle import InMemoryRateLimiter, Sleep

__all__ = [  # own names and the re-exports from unprovision.groupscale (callers import them from here)
    "ACTIONS", "BATCH_BASE", "BATCH_LIMIT", "BOOKKEEPING", "MAX_SCALE_OUT_INDEX", "_BATCH", "_COUNTS",
    "_EMITTED", "_KIND_BY_ACTION", "_RUN", "_THROTTLE_RETRIES", "GroupResult", "GroupWork", "Progress",
    "ProgressFn", "Tally", "_batches", "_note", "_outcome", "apply_batch", "batch_index", "batch_progress",
    "bulk_call", "complete_if_done", "emit_batches", "iter_batches", "purge_group", "tally_of",
]


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
