"""Group scope in process: every device registered through a group, purged in its own hub from here.

The group's registration records are streamed page by page and partitioned by ``assigned_hub`` into
batches of ≤100 device IDs (the bulk-call limit). Memory stays bounded: at most ``max_in_flight + 1`` batches
per hub exist at once, because the stream waits while a hub has ``max_in_flight`` calls outstanding.

``purge_group`` makes bulk registry calls from a thread pool per hub, each call first reserving its device
count from the hub's ``RateLimiter`` (bulk calls count per device against the registry budget). Hubs holding
many of the group's devices may take the import-job path instead (``unprovision.group.jobs``). The other
mode, batches through the work queue, is ``unprovision.group.scaleout``.

A purge runs under its event's per-target lease (``unprovision.engine.lease``), which may be held far longer
than its ttl here: the lease is renewed while the purge runs, and the purge checks it before every bulk call
and every import job, so a purge whose lease was lost stops with ``LeaseLost`` before its next change
(docs/reliability.md, "lease renewal").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice

from shared.errors import HubNotConfigured
from shared.plan import StepKind
from shared.ports import DeviceRegistries, DeviceRegistry, ProvisioningService, RateLimiter, Tally
from unprovision.engine import lease
from unprovision.group.batches import ACTIONS, BATCH_LIMIT, bulk_call, iter_batches
from unprovision.group.jobs import (
    GroupSpool,
    ImportJobRunner,
    ImportJobs,
    job_purge,
    job_runners,
    spool_group,
)
from unprovision.throttle import InMemoryRateLimiter, Sleep


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
    """How an in-process purge runs: a hub with at least ``import_job_threshold`` devices of the group is
    purged by one import job from ``import_jobs(hub)`` instead of throttled bulk calls
    (``unprovision.group.jobs``; a hub for which ``import_jobs`` returns None stays on the bulk path)."""

    limiter: RateLimiter = field(default_factory=InMemoryRateLimiter)
    sleep: Sleep = time.sleep
    max_in_flight: int = 2
    page_size: int = 100
    import_job_threshold: int | None = None
    import_jobs: ImportJobs | None = None
    max_parallel_jobs: int = 4  # hubs whose import jobs run at once (IoT Hub: one active job per hub)


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
    transient failure after all started calls and jobs ended (a redelivery repeats the idempotent work).

    Without the import-job path the bulk lanes are fed straight from the DPS stream. With it, the group is
    read once into a ``GroupSpool`` (``unprovision.groupjobs``); the job hubs' jobs then run on a pool of
    ``min(job hubs, max_parallel_jobs)`` threads, one job per hub, while the bulk lanes are fed from the
    other hubs' spool files. Each hub's result is recorded (and reported) as soon as it is known, so a
    failing hub does not lose the others' work."""
    purge = _Purge(ACTIONS[kind], registries, work, progress, reason)
    if work.import_job_threshold is None or work.import_jobs is None:
        purge.bulk(iter_batches(dps, group_id, work.page_size))
        return purge.result({})
    with spool_group(dps, group_id, work.page_size) as spool:
        job_hubs = job_runners(spool.counts, threshold=work.import_job_threshold,
                               import_jobs=work.import_jobs)
        bulk_hubs = [hub for hub in spool.counts if hub not in job_hubs]
        purge.with_jobs(job_hubs, spool, lambda: purge.bulk(_spooled_batches(spool, bulk_hubs)))
    return purge.result(job_hubs)


class _Purge:
    """The state of one in-process purge: lanes, per-hub tallies (under ``lock``) and unknown hubs."""

    def __init__(self, action: str, registries: DeviceRegistries, work: GroupWork,
                 progress: ProgressFn | None, reason: str | None) -> None:
        self.action, self.registries, self.work = action, registries, work
        self.progress, self.reason = progress, reason
        self.lanes: dict[str, _HubLane] = {}
        self.unknown: dict[str, int] = {}
        self.tallies: dict[str, Tally] = {}
        self.lock = threading.Lock()
        # Taken here, on the engine's thread: the lanes' pool threads do not inherit its context.
        self.lease = lease.current()
        self.sleep = lease.guarded_sleep(self.lease, work.sleep)  # throttle waits renew the lease

    def _fence(self) -> None:
        """Stop (``LeaseLost``) before a change when the event's lease is no longer ours."""
        if self.lease is not None:
            self.lease.check()

    def _record(self, hub: str, tally: Tally) -> None:
        with self.lock:
            self.tallies[hub] = self.tallies.get(hub, Tally()) + tally
            if self.progress is not None:
                self.progress(Progress(hub, self.tallies[hub].done, self.tallies[hub].failed))

    def _run(self, lane: _HubLane, hub: str, ids: list[str]) -> Tally:
        self._fence()  # the limiter's waits inside bulk_call check again, right before the call
        tally = bulk_call(lane.registry, self.action, ids, limiter=self.work.limiter, sleep=self.sleep,
                          reason=self.reason)
        self._record(hub, tally)
        return tally

    def bulk(self, batches: Iterable[tuple[str, list[str]]]) -> None:
        """Bulk lanes over ``batches``; re-raises the first failure after every started call ended."""
        try:
            for hub, ids in batches:
                self._fence()  # no more batches handed out once the lease is gone
                lane = self.lanes.get(hub) or _open_lane(hub, self.registries, self.work, self.lanes,
                                                         self.unknown)
                if lane is None:
                    self.unknown[hub] += len(ids)
                    continue
                lane.submit(partial(self._run, lane, hub, ids))
        finally:
            for lane in self.lanes.values():
                lane.pool.shutdown(wait=True)
        for lane in self.lanes.values():
            for future in lane.futures:
                future.result()  # re-raise the first failure

    def _job(self, hub: str, runner: ImportJobRunner, ids: Iterator[str]) -> None:
        self._fence()
        counts = job_purge(runner, self.action, ids, reason=self.reason)
        self._record(hub, Tally(counts.changed, counts.unchanged, counts.failed))

    def with_jobs(self, job_hubs: dict[str, ImportJobRunner], spool: GroupSpool,
                  bulk: Callable[[], None]) -> None:
        """Run ``bulk`` while the hubs' jobs run concurrently (one per hub); when all ended, re-raise the
        first failure: the bulk lanes' first, else the first failing job hub's (in ``job_hubs`` order)."""
        workers = min(len(job_hubs), max(1, self.work.max_parallel_jobs))
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="import-job") as pool:
            for hub, runner in job_hubs.items():
                futures.append(pool.submit(self._job, hub, runner, spool.ids(hub)))
            bulk()  # the pool's exit waits for the jobs even when the bulk lanes raised
        for future in futures:
            future.result()

    def result(self, job_hubs: dict[str, ImportJobRunner]) -> GroupResult:
        for hub, count in self.unknown.items():
            self.tallies[hub] = Tally(failed=count)
        warnings = tuple(f"hub {hub} is not configured: {n} devices not purged"
                         for hub, n in self.unknown.items())
        calls = sum(len(lane.futures) for lane in self.lanes.values())
        return GroupResult(self.tallies, calls, warnings, len(job_hubs))


def _spooled_batches(spool: GroupSpool, hubs: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(hub, ≤100 device IDs) from the hubs' spool files, one batch per hub in turn (as a stream would
    interleave them), so one hub's full lane does not hold back the first batch of the others for long."""
    readers = {hub: spool.ids(hub) for hub in hubs}
    while readers:
        for hub in list(readers):
            batch = list(islice(readers[hub], BATCH_LIMIT))
            if batch:
                yield hub, batch
            if len(batch) < BATCH_LIMIT:
                del readers[hub]


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
