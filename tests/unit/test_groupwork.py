"""Group fan-out: streaming, per-hub bulk batches, throttle, progress, scale-out batches and completion."""

from __future__ import annotations

import dataclasses
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from shared.adapters.journal_memory import InMemoryJournal
from shared.errors import Throttled, Transient
from shared.events import LifecycleEvent, parse_event
from shared.lifecycle import BatchState, EmissionState
from shared.model import HubDeviceStatus, ProvisioningStatus, RegistrationState
from shared.plan import StepKind
from shared.policy import DEFAULT_POLICY
from shared.ports import Tally
from tests.fakes import (
    FakeClock,
    FakeDeviceRegistries,
    FakeDeviceRegistry,
    FakeProvisioningService,
    RecordingNotifier,
    RecordingWorkQueue,
)
from unprovision.engine.core import Engine
from unprovision.engine.inventory import GroupCache
from unprovision.group import scaleout
from unprovision.group.batches import bulk_call, iter_batches
from unprovision.group.inprocess import GroupWork, Progress, purge_group
from unprovision.throttle import HubBudget, InMemoryRateLimiter

HUBS = ("hub-a.example", "hub-b.example")


class Fleet:
    """A group of ``size`` devices spread alternately over two hubs, each hub an S1 unit (100 ops/min)."""

    def __init__(self, size: int = 1_000, *, call_delay: float = 0.0) -> None:
        self.clock = FakeClock()
        self.dps = FakeProvisioningService()
        self.dps.add_group("fleet-grp")
        self.registries = FakeDeviceRegistries()
        self.hubs = {h: self.registries.add(FakeDeviceRegistry(h, ops_per_minute=100, clock=self.clock,
                                                               call_delay=call_delay)) for h in HUBS}
        for n in range(size):
            hub = HUBS[n % 2]
            self.dps.add_registration(f"dev-{n:04d}", hub, group_id="fleet-grp")
            self.hubs[hub].add_device(f"dev-{n:04d}")
        self.limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=100, burst=100), clock=self.clock)
        self.journal = InMemoryJournal()
        self.queue = RecordingWorkQueue()
        self.notifier = RecordingNotifier()

    def work(self, **kwargs: Any) -> GroupWork:
        return GroupWork(limiter=self.limiter, sleep=self.clock.sleep, **kwargs)

    def engine(self, *, scale_out: bool = False) -> Engine:
        return Engine(dps=self.dps, registries=self.registries, journal=self.journal, policy=DEFAULT_POLICY,
                      group_work=self.work(), notifier=self.notifier if scale_out else None,
                      work_queue=self.queue if scale_out else None, group_cache=GroupCache())

    def apply_message(self, message: Any, *, last_delivery: bool = False) -> None:
        scaleout.apply_batch(scaleout.BatchRef.from_message(message), registries=self.registries,
                             journal=self.journal, limiter=self.limiter, notifier=self.notifier,
                             last_delivery=last_delivery, sleep=self.clock.sleep)

    def disabled(self) -> int:
        return sum(1 for r in self.hubs.values() for d in r.devices.values()
                   if d.status is HubDeviceStatus.DISABLED)


def group_event(**fields: Any) -> LifecycleEvent:
    return parse_event({"eventId": "grp-ev", "type": "compromised", "enrollmentGroupId": "fleet-grp",
                        "occurredAt": "2025-01-31T12:00:00Z", "source": "soc", **fields})


def test_a_1000_device_group_over_two_hubs_is_disabled_in_10_bulk_calls_within_each_hubs_budget() -> None:
    fleet = Fleet()
    result = purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DISABLED, dps=fleet.dps,
                         registries=fleet.registries, work=fleet.work(max_in_flight=2))
    assert fleet.disabled() == 1_000
    assert result.calls == 10
    assert result.total.changed == 1_000
    for registry in fleet.hubs.values():
        assert registry.throttled == 0  # the hub never had to refuse a call
        assert registry.max_in_flight <= 2
        assert all(n <= 100 for _, n, _ in registry.bulk_calls)
        start = registry.bulk_calls[0][2]
        spent = 0
        for _, n, at in registry.bulk_calls:
            spent += n
            assert spent <= 100 + (at - start) * 100 / 60 + 1e-6  # burst + refill, never more
    assert fleet.clock.now - 1_000.0 >= 4 * 60  # 500 devices per S1 hub: at least four refill minutes


def test_progress_is_reported_per_hub_after_every_bulk_call() -> None:
    fleet = Fleet(size=300)
    seen: list[Progress] = []
    purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DELETED, dps=fleet.dps,
                registries=fleet.registries, work=fleet.work(), progress=seen.append)
    assert len(seen) == 4  # 150 per hub: 100 + 50
    final = {p.hub: p.done for p in seen}
    assert final == {HUBS[0]: 150, HUBS[1]: 150}
    assert all(not r.devices for r in fleet.hubs.values())


def test_registrations_are_streamed_lazily_not_read_into_memory_first() -> None:
    fleet = Fleet(call_delay=0.02)  # keep calls in flight long enough for the stream to block on them
    pulled_at_call: list[int] = []
    for registry in fleet.hubs.values():
        registry.on_bulk = lambda _op, _n: pulled_at_call.append(fleet.dps.pulled["fleet-grp"])
    purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DISABLED, dps=fleet.dps,
                registries=fleet.registries, work=fleet.work(max_in_flight=1))
    # With one call in flight per hub the stream stops at a hub's second full batch: ≤ 2 x 2 x 100 pulled.
    assert pulled_at_call[0] <= 400
    assert fleet.dps.pulled["fleet-grp"] == 1_000


def test_batches_are_full_per_hub_and_yielded_as_soon_as_they_fill() -> None:
    fleet = Fleet(size=250)
    batches = iter_batches(fleet.dps, "fleet-grp")
    hub, ids = next(batches)
    assert (hub, len(ids)) == (HUBS[0], 100)
    assert fleet.dps.pulled["fleet-grp"] == 199
    rest = [(h, len(i)) for h, i in batches]
    assert sorted(rest) == [(HUBS[0], 25), (HUBS[1], 25), (HUBS[1], 100)]


def test_a_bulk_call_never_takes_more_than_100_devices() -> None:
    fleet = Fleet(size=2)
    with pytest.raises(ValueError, match=r"1\.\.100"):
        bulk_call(fleet.hubs[HUBS[0]], "disable", [f"d{i}" for i in range(101)], limiter=fleet.limiter,
                  sleep=fleet.clock.sleep)


def test_a_429_despite_the_budget_is_retried_after_its_retry_after() -> None:
    fleet = Fleet(size=2)
    registry = fleet.hubs[HUBS[0]]
    registry.fail_on("bulk_disable", 1, Throttled("429", retry_after=12.0))
    tally = bulk_call(registry, "disable", ["dev-0000"], limiter=fleet.limiter, sleep=fleet.clock.sleep)
    assert tally.changed == 1
    assert 12.0 in fleet.clock.slept


def test_devices_on_an_unconfigured_hub_are_counted_failed_with_a_warning() -> None:
    fleet = Fleet(size=10)
    fleet.dps.add_registration("stray", "unknown.example", group_id="fleet-grp")
    result = purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DISABLED, dps=fleet.dps,
                         registries=fleet.registries, work=fleet.work())
    assert result.by_hub["unknown.example"].failed == 1
    assert result.total.changed == 10
    assert any("unknown.example" in w for w in result.warnings)


def test_a_compromised_group_event_is_applied_in_process_end_to_end() -> None:
    fleet = Fleet(size=250)
    outcome = fleet.engine().apply(group_event())
    assert outcome.status == "completed"
    assert [(s.kind, s.outcome) for s in outcome.steps] == [
        ("GroupDisabled", "done"), ("GroupDevicesDisabled", "done")]
    assert "changed=250" in (outcome.steps[1].after or "")
    assert fleet.dps.groups["fleet-grp"].status is ProvisioningStatus.DISABLED
    assert fleet.disabled() == 250


def _scale_out(fleet: Fleet) -> Any:
    return fleet.engine(scale_out=True).apply(group_event())


def test_scale_out_records_per_hub_batches_that_apply_batch_consumes_until_the_event_completes() -> None:
    fleet = Fleet(size=450)
    outcome = _scale_out(fleet)
    assert outcome.status == "in_progress"
    assert fleet.disabled() == 0  # the work is queued, not done
    emission = fleet.journal.latest_emission("grp-ev", 1)
    assert emission is not None
    assert (emission.run, emission.state, emission.batches) == (1, EmissionState.RECORDED, 6)
    batches = fleet.journal.batches("grp-ev", 1, 1)
    assert len(batches) == 6  # 225 per hub: 100 + 100 + 25
    assert all(0 < len(b.device_ids) <= 100 for b in batches)
    assert all(b.hub in HUBS and b.action == "disable" and b.state is BatchState.EMITTED for b in batches)
    assert sum(len(b.device_ids) for b in batches) == 450
    assert len({d for b in batches for d in b.device_ids}) == 450
    messages = fleet.queue.messages
    # A work message names a recorded batch and nothing else: no hub, action or device IDs.
    assert messages == [{"eventId": "grp-ev", "stepIndex": 1, "run": 1, "batch": n} for n in range(1, 7)]
    for message in messages[:-1]:
        fleet.apply_message(message)
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "in_progress"
    state = scaleout.progress(fleet.journal, "grp-ev", 1)
    assert state is not None
    assert (state.settled, state.expected, state.failed_batches) == (5, 6, 0)
    fleet.apply_message(messages[-1])
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "completed"
    assert fleet.disabled() == 450
    assert all(b.state is BatchState.APPLIED for b in fleet.journal.batches("grp-ev", 1, 1))
    assert len(fleet.notifier.published) == 1
    final = fleet.notifier.published[0]
    assert final["status"] == "completed"
    assert final["steps"][1]["outcome"] == "done"
    assert final["steps"][1]["after"] == "batches 6: changed=450 unchanged=0 failed=0"


def test_a_redelivered_batch_is_applied_and_counted_once_and_a_late_duplicate_changes_nothing() -> None:
    fleet = Fleet(size=150)
    _scale_out(fleet)
    first, second = fleet.queue.messages
    for message in (first, first, second, second):
        fleet.apply_message(message)
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "completed"
    assert len(fleet.notifier.published) == 1
    # Accepted bulk calls (a 429 from the simulated hub is retried and not counted): a settled batch is
    # never applied again, so each duplicate made no call.
    assert sum(len(r.bulk_calls) for r in fleet.hubs.values()) == 2
    tallies = [b.tally for b in fleet.journal.batches("grp-ev", 1, 1)]
    assert tallies == [Tally(changed=75), Tally(changed=75)]
    assert record.steps[1].after == "batches 2: changed=150 unchanged=0 failed=0"


def test_scale_out_emission_is_lazy_too() -> None:
    fleet = Fleet(size=1_000)
    pulled_at_record: list[int] = []
    record_batch = fleet.journal.record_batch

    def spy(event_id: str, batch: Any) -> None:
        pulled_at_record.append(fleet.dps.pulled["fleet-grp"])
        record_batch(event_id, batch)

    fleet.journal.record_batch = spy  # type: ignore[method-assign]
    _scale_out(fleet)
    assert pulled_at_record[0] < 200  # the first batch is recorded as soon as it fills
    assert len(pulled_at_record) == 10
    assert len(fleet.queue.messages) == 10


def test_a_redelivered_group_event_does_not_emit_its_batches_twice() -> None:
    fleet = Fleet(size=150)
    _scale_out(fleet)
    again = _scale_out(fleet)
    assert again.status == "in_progress"
    emission = fleet.journal.latest_emission("grp-ev", 1)
    assert emission is not None
    assert (emission.run, emission.batches) == (1, 2)  # one emission run, its batches recorded once
    # The redelivery re-sends the still unsettled batches of that run (a crash may have come before they
    # were sent); it names the same batches, so applying every message applies each batch once.
    refs = {(m["run"], m["batch"]) for m in fleet.queue.messages}
    assert refs == {(1, 1), (1, 2)}
    for message in fleet.queue.messages:
        fleet.apply_message(message)
    assert sum(len(r.bulk_calls) for r in fleet.hubs.values()) == 2
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "completed"
    assert fleet.disabled() == 150


def test_a_batch_for_an_unconfigured_hub_fails_the_group_event() -> None:
    fleet = Fleet(size=10)
    fleet.dps.add_registration("stray", "unknown.example", group_id="fleet-grp")
    _scale_out(fleet)
    for message in fleet.queue.messages:
        fleet.apply_message(message)
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "failed"
    assert "1 devices in 1 batches not purged" in (record.error or "")
    failed = [b for b in fleet.journal.batches("grp-ev", 1, 1) if b.state is BatchState.FAILED]
    assert [(b.hub, b.device_ids, b.tally) for b in failed] == [
        ("unknown.example", ("stray",), Tally(failed=1))]
    assert fleet.disabled() == 10


# -- import-job path (in process) ------------------------------------------------------------------------


class FakeJobRunner:
    """One hub's import jobs over a ``FakeDeviceRegistry``: consumes the IDs lazily, like the blob upload,
    and may wait on a barrier (to prove jobs overlap) or fail (to prove hubs are isolated)."""

    def __init__(self, registry: FakeDeviceRegistry, *, barrier: threading.Barrier | None = None,
                 error: Exception | None = None, hold: float = 0.0) -> None:
        self.registry, self.barrier, self.error, self.hold = registry, barrier, error, hold
        self.calls: list[str] = []
        self.received: list[type] = []
        self.active = 0
        self.max_active = 0

    def delete(self, device_ids: Iterable[str]) -> Tally:
        return self._job("delete", device_ids)

    def disable(self, device_ids: Iterable[str], reason: str | None = None) -> Tally:
        return self._job("disable", device_ids)

    def _job(self, action: str, device_ids: Iterable[str]) -> Tally:
        self.calls.append(action)
        self.received.append(type(device_ids))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=5)  # broken (raises) unless the other hubs' jobs run meanwhile
            time.sleep(self.hold)
            if self.error is not None:
                raise self.error
            changed = 0
            for device_id in device_ids:
                device = self.registry.devices.get(device_id)
                if device is not None and action == "delete":
                    del self.registry.devices[device_id]
                    changed += 1
                elif device is not None and device.status is not HubDeviceStatus.DISABLED:
                    disabled = dataclasses.replace(device, status=HubDeviceStatus.DISABLED)
                    self.registry.devices[device_id] = disabled
                    changed += 1
            return Tally(changed=changed)
        finally:
            self.active -= 1


class ConcurrencyProbe:
    """Counts the jobs running at once across every runner of one purge."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def wrap(self, runner: FakeJobRunner) -> FakeJobRunner:
        inner = runner._job

        def probed(action: str, device_ids: Iterable[str]) -> Tally:
            with self.lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            try:
                return inner(action, device_ids)
            finally:
                with self.lock:
                    self.active -= 1
        runner._job = probed  # type: ignore[method-assign]
        return runner


def jobs_work(fleet: Fleet, runners: dict[str, FakeJobRunner], threshold: int = 1,
              **kwargs: Any) -> GroupWork:
    return fleet.work(import_job_threshold=threshold, import_jobs=runners.get, **kwargs)


def pages_read(fleet: Fleet) -> int:
    return sum(1 for op, _ in fleet.dps.log if op == "iter_group_registrations.page")


def test_each_hubs_import_job_runs_concurrently_with_the_others() -> None:
    fleet = Fleet(size=200)
    barrier = threading.Barrier(len(HUBS))
    runners = {h: FakeJobRunner(r, barrier=barrier) for h, r in fleet.hubs.items()}
    result = purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DISABLED, dps=fleet.dps,
                         registries=fleet.registries, work=jobs_work(fleet, runners))
    # Both runners passed the barrier: run one after the other, the first would have waited 5 s and broken it.
    assert not barrier.broken
    assert fleet.disabled() == 200
    assert (result.jobs, result.calls) == (2, 0)
    assert result.by_hub == {HUBS[0]: Tally(changed=100), HUBS[1]: Tally(changed=100)}
    assert all(r.calls == ["disable"] and r.max_active == 1 for r in runners.values())  # one job per hub


def test_parallel_jobs_are_bounded_by_max_parallel_jobs() -> None:
    fleet = Fleet(size=40)
    probe = ConcurrencyProbe()
    runners = {h: probe.wrap(FakeJobRunner(r, hold=0.05)) for h, r in fleet.hubs.items()}
    result = purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DELETED, dps=fleet.dps,
                         registries=fleet.registries, work=jobs_work(fleet, runners, max_parallel_jobs=1))
    assert probe.max_active == 1
    assert result.total.changed == 40
    assert all(not r.devices for r in fleet.hubs.values())


def test_the_group_is_read_from_dps_once_when_every_hub_takes_an_import_job() -> None:
    fleet = Fleet(size=1_000)
    runners = {h: FakeJobRunner(r) for h, r in fleet.hubs.items()}
    result = purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DISABLED, dps=fleet.dps,
                         registries=fleet.registries, work=jobs_work(fleet, runners, threshold=500))
    assert fleet.dps.pulled["fleet-grp"] == 1_000  # every record handed out once: one pass
    assert pages_read(fleet) == 10
    assert result.total.changed == 1_000
    assert all(len(r.bulk_calls) == 0 for r in fleet.hubs.values())


def test_a_mixed_group_is_read_once_and_hubs_below_the_threshold_take_bulk_calls() -> None:
    fleet = Fleet(size=300)
    for n in range(60):  # a third hub with 60 devices: below the threshold of 100
        fleet.dps.add_registration(f"small-{n:02d}", "hub-c.example", group_id="fleet-grp")
    small = fleet.registries.add(FakeDeviceRegistry("hub-c.example"))
    for n in range(60):
        small.add_device(f"small-{n:02d}")
    runners = {h: FakeJobRunner(r) for h, r in fleet.hubs.items()}
    seen: list[Progress] = []
    result = purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DELETED, dps=fleet.dps,
                         registries=fleet.registries, work=jobs_work(fleet, runners, threshold=100),
                         progress=seen.append)
    assert fleet.dps.pulled["fleet-grp"] == 360
    assert (result.jobs, result.calls) == (2, 1)
    assert [n for _, n, _ in small.bulk_calls] == [60]
    assert not small.devices
    assert all(not r.devices for r in fleet.hubs.values())
    assert {p.hub: p.done for p in seen} == {HUBS[0]: 150, HUBS[1]: 150, "hub-c.example": 60}


def test_a_failing_hubs_job_does_not_stop_or_lose_the_other_hubs_results() -> None:
    fleet = Fleet(size=200)
    runners = {HUBS[0]: FakeJobRunner(fleet.hubs[HUBS[0]], error=Transient("job queue full")),
               HUBS[1]: FakeJobRunner(fleet.hubs[HUBS[1]], hold=0.05)}
    seen: list[Progress] = []
    with pytest.raises(Transient, match="job queue full"):
        purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DISABLED, dps=fleet.dps,
                    registries=fleet.registries, work=jobs_work(fleet, runners), progress=seen.append)
    assert seen == [Progress(HUBS[1], 100, 0)]  # the healthy hub finished and was reported
    assert fleet.disabled() == 100


class LazyDps:
    """A group of ``size`` registrations made on the fly (nothing held), over two hubs."""

    def __init__(self, size: int) -> None:
        self.size = size

    def iter_group_registrations(self, group_id: str, page_size: int = 100) -> Iterator[RegistrationState]:
        for n in range(self.size):
            yield RegistrationState(f"device-{n:08d}", None, HUBS[n % 2], "assigned",
                                    enrollment_group_id=group_id)


class CountingRunner:
    """Consumes the IDs lazily and keeps only a count."""

    def __init__(self) -> None:
        self.seen = 0
        self.received: type | None = None

    def delete(self, device_ids: Iterable[str]) -> Tally:
        self.received = type(device_ids)
        for _ in device_ids:
            self.seen += 1
        return Tally(changed=self.seen)

    def disable(self, device_ids: Iterable[str], reason: str | None = None) -> Tally:
        return self.delete(device_ids)


def test_the_single_pass_spools_ids_to_disk_so_memory_does_not_grow_with_the_group() -> None:
    def peak(size: int) -> int:
        runners = {h: CountingRunner() for h in HUBS}
        tracemalloc.start()
        try:
            result = purge_group("grp-ev", "fleet-grp", StepKind.GROUP_DEVICES_DELETED,
                                 dps=LazyDps(size), registries=FakeDeviceRegistries(),  # type: ignore[arg-type]
                                 work=GroupWork(import_job_threshold=1, import_jobs=runners.get))
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.total.changed == size
        assert all(r.received is not None and not issubclass(r.received, (list, set, tuple))
                   for r in runners.values())
        return top

    small, large = peak(2_000), peak(40_000)
    # 38,000 more IDs held in memory would add > 2 MB (each str is ~65 bytes + a list slot)
    assert large - small < 256 * 1024, (small, large)
