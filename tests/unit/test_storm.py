"""Storm coalescing: single devices' hub steps join a per-hub set beyond the budget, and a flush applies them.

Fakes implement the ports (tests/fakes.py, the in-memory journal and pending set); the clock is fake, so
budgets refill only when a test moves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from shared.adapters.journal_memory import InMemoryJournal
from shared.adapters.pending_memory import InMemoryPendingHubSteps
from shared.errors import Rejected, Transient
from shared.events import LifecycleEvent, parse_event
from shared.lifecycle import EventStatus
from shared.model import AttestationType, HubDeviceStatus, ProvisioningStatus
from shared.policy import DEFAULT_POLICY
from shared.ports import PendingHubStep
from tests.fakes import (
    FakeClock,
    FakeDeviceRegistries,
    FakeDeviceRegistry,
    FakeProvisioningService,
    RecordingNotifier,
    RecordingWorkQueue,
)
from unprovision.engine import lease
from unprovision.engine.core import Engine
from unprovision.engine.inventory import GroupCache
from unprovision.group.inprocess import GroupWork
from unprovision.storm import coalesce, flush
from unprovision.storm.coalesce import PENDING_AFTER, Storm
from unprovision.throttle import HubBudget, InMemoryRateLimiter

HUB = "hub-a.example"
OTHER_HUB = "hub-b.example"


class Killed(BaseException):
    """Stands for the host being killed: nothing below catches it."""


@dataclass
class JobResultLike:
    job_id: str
    changed: int = 0
    unchanged: int = 0
    failed: int = 0


@dataclass
class FakeJobs:
    """An import-job runner over a fake registry: applies the whole set at once, as a finished job."""

    registry: FakeDeviceRegistry
    jobs: list[list[str]] = field(default_factory=list)
    fail_next: BaseException | None = None
    kill_after_apply: bool = False
    report_failed: int = 0

    def delete(self, device_ids: Iterable[str]) -> JobResultLike:
        return self._run(list(device_ids), HubDeviceStatus.DISABLED, {}, delete=True)

    def disable(self, device_ids: Iterable[str], reason: str | None = None, *,
                reasons: Mapping[str, str] | None = None) -> JobResultLike:
        return self._run(list(device_ids), HubDeviceStatus.DISABLED, dict(reasons or {}), delete=False)

    def _run(self, ids: list[str], status: HubDeviceStatus, reasons: dict[str, str], *,
             delete: bool) -> JobResultLike:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.jobs.append(ids)
        changed = 0
        for device_id in ids:
            device = self.registry.devices.get(device_id)
            if device is None or (not delete and device.status is status):
                continue
            changed += 1
            if delete:
                del self.registry.devices[device_id]
            else:
                self.registry.devices[device_id] = _with(device, status, reasons.get(device_id))
        if self.kill_after_apply:
            self.kill_after_apply = False
            raise Killed
        return JobResultLike(f"job-{len(self.jobs)}", changed, len(ids) - changed, self.report_failed)


def _with(device: Any, status: HubDeviceStatus, reason: str | None) -> Any:
    from dataclasses import replace
    return replace(device, status=status, status_reason=reason)


class Storms:
    """``size`` devices with individual enrollments on ``HUB`` (a budget of 200 ops/min) and a storm."""

    def __init__(self, size: int = 150, *, threshold: int = 20) -> None:
        self.clock = FakeClock()
        self.dps = FakeProvisioningService()
        self.registries = FakeDeviceRegistries()
        self.hub = self.registries.add(FakeDeviceRegistry(HUB))
        self.registries.add(FakeDeviceRegistry(OTHER_HUB))
        for n in range(size):
            self.add_device(f"dev-{n:04d}")
        self.journal = InMemoryJournal()
        self.queue = RecordingWorkQueue()
        self.notifier = RecordingNotifier()
        self.pending = InMemoryPendingHubSteps(clock=self.clock)
        self.jobs = FakeJobs(self.hub)
        # 200 ops: the first 100 events pay their read and write (2 ops each) and go the direct way
        self.limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=200, burst=200), clock=self.clock)
        self.storm = Storm(pending=self.pending, queue=self.queue, limiter=self.limiter,
                           job_threshold=threshold, import_jobs=self.runner, sleep=self.clock.sleep,
                           clock=self.clock)
        self.engine = Engine(dps=self.dps, registries=self.registries, journal=self.journal,
                             policy=DEFAULT_POLICY, group_work=GroupWork(limiter=self.limiter),
                             notifier=self.notifier, work_queue=self.queue, group_cache=GroupCache(),
                             storm=self.storm, sleep=self.clock.sleep)

    def runner(self, hub: str) -> FakeJobs | None:
        return self.jobs if hub == HUB else None

    def add_device(self, device_id: str) -> None:
        self.dps.add_enrollment(device_id, attestation=AttestationType.SYMMETRIC_KEY)
        self.dps.add_registration(device_id, HUB)
        self.hub.add_device(device_id)

    def event(self, event_id: str, device_id: str, kind: str = "lost", **extra: Any) -> LifecycleEvent:
        return parse_event({"eventId": event_id, "type": kind, "registrationId": device_id,
                            "occurredAt": "2026-12-06T00:00:00Z", "source": "tracker", **extra})

    def lost(self, count: int, start: int = 0) -> None:
        for n in range(start, start + count):
            self.engine.apply(self.event(f"ev-{n:04d}", f"dev-{n:04d}"))

    def flush_messages(self) -> list[Mapping[str, Any]]:
        return [m for m in self.queue.messages if flush.is_flush(m)]

    def drain(self, *, last_delivery: bool = False) -> int:
        """Deliver every flush message sent so far (and any sent meanwhile), in order."""
        finished, delivered = 0, 0
        while delivered < len(self.flush_messages()):
            message = self.flush_messages()[delivered]
            delivered += 1
            hub = flush.parse_flush(message, list(self.registries.hubs()))
            finished += flush.flush(hub, self.storm, self.ports(), last_delivery=last_delivery)
        return finished

    def flush_runs_during_the_first_wait(self) -> list[float]:
        """The engine's first wait for a flush (``settle_earlier``) delivers the flush messages sent so far,
        as when the running flush ends or a killed one's message comes back meanwhile; the waits, in order."""
        polls: list[float] = []

        def sleep(seconds: float) -> None:
            polls.append(seconds)
            self.clock.advance(seconds)
            if len(polls) == 1:
                self.drain()

        storm = Storm(**{**self.storm.__dict__, "sleep": sleep})
        self.engine = Engine(**{**self.engine.__dict__, "storm": storm})
        return polls

    def ports(self) -> coalesce.Apply:
        return coalesce.Apply(self.registries, self.journal, self.notifier)

    def status(self, event_id: str) -> str:
        record = self.journal.get(event_id)
        assert record is not None
        return record.status

    def hub_step(self, event_id: str) -> Any:
        record = self.journal.get(event_id)
        assert record is not None
        return max(record.steps, key=lambda s: s.index)

    def device(self, device_id: str) -> Any:
        return self.hub.devices.get(device_id)


def test_a_single_event_with_nothing_pending_is_applied_at_once_without_a_flush() -> None:
    s = Storms(size=1)
    outcome = s.engine.apply(s.event("ev-1", "dev-0000"))
    assert outcome.status == EventStatus.COMPLETED
    assert s.device("dev-0000").status is HubDeviceStatus.DISABLED
    assert s.hub_step("ev-1").after != PENDING_AFTER
    assert s.flush_messages() == []
    assert list(s.pending.entries(HUB)) == []


def test_events_beyond_the_budget_wait_in_the_set_with_dps_revoked_and_one_job_applies_them() -> None:
    s = Storms(size=150)
    s.lost(150)
    waiting = [f"ev-{n:04d}" for n in range(150) if s.status(f"ev-{n:04d}") == EventStatus.IN_PROGRESS]
    assert len(waiting) == 50  # the first 100 spent the burst directly
    for event_id in waiting:  # the DPS step ran at once: the device can no longer provision
        device_id = event_id.replace("ev-", "dev-")
        assert s.dps.enrollments[device_id].status is ProvisioningStatus.DISABLED
        assert s.device(device_id).status is HubDeviceStatus.ENABLED
        assert s.hub_step(event_id).after == PENDING_AFTER
    assert len(s.flush_messages()) == 1  # later joiners saw no flush holding the set... and one message

    assert s.drain() == 50
    assert [len(job) for job in s.jobs.jobs] == [50]
    for event_id in waiting:
        assert s.status(event_id) == EventStatus.COMPLETED
        assert s.hub_step(event_id).after == "import job job-1"
        assert s.device(event_id.replace("ev-", "dev-")).status is HubDeviceStatus.DISABLED
    published = [o["eventId"] for o in s.notifier.published]
    assert sorted(published) == sorted(f"ev-{n:04d}" for n in range(150))  # one outcome per event
    assert list(s.pending.entries(HUB)) == []


def test_each_waiting_device_keeps_its_own_status_reason_in_the_job() -> None:
    s = Storms(size=130)
    s.lost(100)
    for n in range(100, 130):
        s.engine.apply(s.event(f"ev-{n:04d}", f"dev-{n:04d}", note=f"pallet 7 item {n}"))
    s.drain()
    assert s.device("dev-0120").status_reason == "pallet 7 item 120"


def test_a_small_set_goes_by_bulk_calls_paid_from_the_budget() -> None:
    s = Storms(size=110, threshold=20)
    s.lost(110)
    s.clock.advance(60)  # the budget refills: the flush pays 10 devices
    assert s.drain() == 10
    assert s.jobs.jobs == []
    assert s.hub_step("ev-0105").after == "bulk call"
    assert s.device("dev-0105").status is HubDeviceStatus.DISABLED


def test_a_redelivered_waiting_event_does_not_join_twice_or_apply_twice() -> None:
    s = Storms(size=130)
    s.lost(130)
    again = s.engine.apply(s.event("ev-0120", "dev-0120"))
    assert again.status == EventStatus.IN_PROGRESS
    assert len(list(s.pending.entries(HUB))) == 30
    s.drain()
    assert sum(job.count("dev-0120") for job in s.jobs.jobs) == 1
    assert [o["eventId"] for o in s.notifier.published].count("ev-0120") == 1


def test_a_found_for_a_device_whose_lost_step_waits_lands_after_it() -> None:
    s = Storms(size=130)
    s.lost(130)
    assert s.status("ev-0125") == EventStatus.IN_PROGRESS
    s.clock.advance(60)
    found = s.engine.apply(s.event("fd-0125", "dev-0125", kind="found"))
    assert found.status == EventStatus.COMPLETED
    assert s.status("ev-0125") == EventStatus.COMPLETED  # the lost step was applied first, by itself
    assert s.hub_step("ev-0125").after == "bulk call"
    s.drain()  # the set no longer holds the device: the flush cannot disable it after the found
    assert s.device("dev-0125").status is HubDeviceStatus.ENABLED
    assert s.dps.enrollments["dev-0125"].status is ProvisioningStatus.ENABLED
    assert all("dev-0125" not in job for job in s.jobs.jobs)


def test_a_found_waits_for_a_flush_holding_the_lost_step_and_lands_after_it() -> None:
    s = Storms(size=130)
    s.lost(130)
    entry = s.pending.get(HUB, "dev-0125")
    assert entry is not None
    s.pending.claim([entry], "flush-someone")  # a flush took the set and is running its job
    polls = s.flush_runs_during_the_first_wait()  # the running flush ends while the found waits
    found = s.engine.apply(s.event("fd-0125", "dev-0125", kind="found"))
    assert polls, "the found waited for the flush"
    assert found.status == EventStatus.COMPLETED
    assert s.hub_step("ev-0125").after.startswith("import job")
    assert s.device("dev-0125").status is HubDeviceStatus.ENABLED


def test_a_found_gives_up_waiting_on_a_flush_that_never_ends_and_is_retried() -> None:
    s = Storms(size=130)
    s.lost(130)
    entry = s.pending.get(HUB, "dev-0125")
    assert entry is not None
    s.pending.claim([entry], "flush-stuck")
    with pytest.raises(coalesce.EarlierStepInFlight):
        s.engine.apply(s.event("fd-0125", "dev-0125", kind="found"))
    assert s.journal.get("fd-0125") is None  # nothing planned or changed: the redelivery starts clean
    assert s.dps.enrollments["dev-0125"].status is ProvisioningStatus.DISABLED


def test_a_flush_killed_after_its_job_is_resumed_and_every_event_finishes_once() -> None:
    s = Storms(size=150)
    s.lost(150)
    s.jobs.kill_after_apply = True
    with pytest.raises(Killed):
        s.drain()
    assert all(e.claim is not None for e in s.pending.entries(HUB))  # claimed, not lost
    assert s.status("ev-0140") == EventStatus.IN_PROGRESS
    assert s.drain() == 50  # the redelivered message: the stale claims are this flush's now
    assert s.status("ev-0140") == EventStatus.COMPLETED
    published = [o["eventId"] for o in s.notifier.published]
    assert len(published) == len(set(published)) == 150


def kill_next_call(fake: object, method: str) -> None:
    """The host dies inside ``fake.method``'s next call, before it does anything."""
    def killed(*_args: Any, **_kwargs: Any) -> None:
        delattr(fake, method)  # the fake's own method again from here on
        raise Killed
    setattr(fake, method, killed)


def kill_flush_before_it_removes_its_steps(s: Storms) -> None:
    kill_next_call(s.pending, "remove")
    with pytest.raises(Killed):
        s.drain()


def found_after_a_flush_left_its_finished_steps() -> Storms:
    """A storm's flush killed before it removed its finished steps; then a ``found`` re-enables dev-0140, and
    a storm on other devices spends the hub's budget, so a later event's step on dev-0140 joins the set."""
    s = Storms(size=150)
    s.lost(150)
    kill_flush_before_it_removes_its_steps(s)
    s.clock.advance(60)
    s.engine.apply(s.event("fd-0140", "dev-0140", kind="found"))
    s.limiter.acquire(HUB, 200)
    return s


def test_a_found_after_a_flush_killed_before_removing_its_finished_steps_is_not_undone_by_the_next() -> None:
    s = Storms(size=150)
    s.lost(150)
    kill_flush_before_it_removes_its_steps(s)
    assert s.status("ev-0140") == EventStatus.COMPLETED
    assert s.pending.get(HUB, "dev-0140") is not None  # the finished event's step is still in the set
    s.clock.advance(60)
    assert s.engine.apply(s.event("fd-0140", "dev-0140", kind="found")).status == EventStatus.COMPLETED
    s.drain()  # the killed flush's message, redelivered
    assert s.device("dev-0140").status is HubDeviceStatus.ENABLED
    assert len(s.jobs.jobs) == 1  # nothing of the finished events applied again
    assert list(s.pending.entries(HUB)) == []


def test_a_later_event_joining_where_a_killed_flush_left_a_finished_step_has_its_own_step_applied() -> None:
    s = found_after_a_flush_left_its_finished_steps()
    assert s.engine.apply(s.event("st-0140", "dev-0140", kind="stolen")).status == EventStatus.IN_PROGRESS
    stored = s.pending.get(HUB, "dev-0140")
    assert stored is not None
    assert (stored.event_id, stored.claim) == ("st-0140", None)
    s.drain()
    assert s.status("st-0140") == EventStatus.COMPLETED
    assert s.hub_step("st-0140").after == "bulk call"
    assert s.device("dev-0140").status is HubDeviceStatus.DISABLED
    assert [o["eventId"] for o in s.notifier.published].count("st-0140") == 1


def test_a_redelivered_event_whose_step_never_joined_joins_in_place_of_a_finished_events_step() -> None:
    s = found_after_a_flush_left_its_finished_steps()
    kill_next_call(s.pending, "add")  # killed after journaling the step as waiting, before it joined
    with pytest.raises(Killed):
        s.engine.apply(s.event("st-0140", "dev-0140", kind="stolen"))
    s.clock.advance(120)  # the target's lease of the killed delivery expires
    assert s.engine.apply(s.event("st-0140", "dev-0140", kind="stolen")).status == EventStatus.IN_PROGRESS
    s.drain()
    assert s.status("st-0140") == EventStatus.COMPLETED
    assert s.device("dev-0140").status is HubDeviceStatus.DISABLED


def test_a_found_after_a_flush_recorded_a_lost_step_but_died_before_finishing_it_lands_after_it() -> None:
    s = Storms(size=150)
    s.lost(150)
    kill_next_call(s.journal, "finish")
    with pytest.raises(Killed):
        s.drain()
    recorded = [f"ev-{n:04d}" for n in range(100, 150) if s.status(f"ev-{n:04d}") == EventStatus.IN_PROGRESS
                and s.hub_step(f"ev-{n:04d}").after.startswith("import job")]
    assert len(recorded) == 1
    device_id = recorded[0].replace("ev-", "dev-")
    polls = s.flush_runs_during_the_first_wait()  # the killed flush's message is back while the found waits
    found = s.engine.apply(s.event("fd-1", device_id, kind="found"))
    assert polls, "the found waited for the flush holding the lost step"
    assert found.status == EventStatus.COMPLETED
    assert s.status(recorded[0]) == EventStatus.COMPLETED
    s.drain()
    assert s.device(device_id).status is HubDeviceStatus.ENABLED


def test_a_transient_job_failure_leaves_the_set_claimed_for_the_redelivery() -> None:
    s = Storms(size=150)
    s.lost(150)
    s.jobs.fail_next = Transient("job quota")
    with pytest.raises(Transient):
        s.drain()
    assert len(list(s.pending.entries(HUB))) == 50
    assert s.drain() == 50


def test_on_its_last_delivery_a_failing_flush_sends_itself_again_instead_of_poisoning() -> None:
    s = Storms(size=150)
    s.lost(150)
    s.jobs.fail_next = Transient("job quota")
    before = len(s.flush_messages())
    hub = flush.parse_flush(s.flush_messages()[0], list(s.registries.hubs()))
    assert flush.flush(hub, s.storm, s.ports(), last_delivery=True) == 0
    assert len(s.flush_messages()) == before + 1
    assert s.drain() == 50


def test_a_flush_finding_the_set_held_while_steps_wait_looks_again_after_the_holders_lease_ttl() -> None:
    s = Storms(size=150)
    s.lost(150)
    sent = len(s.queue.messages)
    with lease.held(s.journal, coalesce.flush_lease_key(HUB), renew_in_background=False):
        assert flush.flush(HUB, s.storm, s.ports(), last_delivery=False) == 0  # no failure to redeliver
    assert s.queue.messages[sent:] == [coalesce.flush_message(HUB)]
    assert s.queue.delays[sent:] == [lease.DEFAULT_TTL]
    assert s.drain() == 50


def test_a_flush_finding_the_set_held_with_nothing_waiting_sends_nothing() -> None:
    s = Storms(size=10)
    s.lost(10)
    with lease.held(s.journal, coalesce.flush_lease_key(HUB), renew_in_background=False):
        assert flush.flush(HUB, s.storm, s.ports(), last_delivery=False) == 0
    assert s.queue.messages == []


def test_a_job_that_reports_failed_devices_is_followed_by_bulk_calls_that_name_each() -> None:
    s = Storms(size=150)
    s.lost(150)
    s.jobs.report_failed = 1
    s.clock.advance(60)
    assert s.drain() == 50
    assert s.hub_step("ev-0140").after == "bulk call"
    assert s.device("dev-0140").status is HubDeviceStatus.DISABLED


def test_a_step_that_joins_while_a_flush_holds_the_set_is_flushed_by_a_later_message() -> None:
    s = Storms(size=160)
    s.lost(150)

    def late_joiner(_seconds: float) -> None:
        pass

    original = s.jobs._run

    def join_during_job(*args: Any, **kwargs: Any) -> JobResultLike:
        s.lost(10, start=150)  # they find the flush lease held: no message of their own
        return original(*args, **kwargs)

    s.jobs._run = join_during_job  # type: ignore[method-assign]
    first = s.flush_messages()[0]
    hub = flush.parse_flush(first, list(s.registries.hubs()))
    flush.flush(hub, s.storm, s.ports(), last_delivery=False)
    s.jobs._run = original  # type: ignore[method-assign]
    assert all(s.status(f"ev-{n:04d}") == EventStatus.COMPLETED for n in range(100, 150))
    s.drain()
    assert all(s.status(f"ev-{n:04d}") == EventStatus.COMPLETED for n in range(150, 160))
    assert list(s.pending.entries(HUB)) == []


@pytest.mark.parametrize("message", [
    {"flushHub": "unknown.example"}, {"flushHub": HUB, "deviceIds": ["x"]}, {"flushHub": 3}, ["flushHub"],
])
def test_a_flush_message_naming_anything_but_a_configured_hub_is_rejected(message: Any) -> None:
    with pytest.raises(Rejected):
        flush.parse_flush(message, [HUB, OTHER_HUB])


def test_a_delete_storm_goes_by_a_delete_job() -> None:
    s = Storms(size=130)
    for n in range(130):
        s.engine.apply(s.event(f"ev-{n:04d}", f"dev-{n:04d}", kind="retired"))
    s.drain()
    assert all(s.device(f"dev-{n:04d}") is None for n in range(130))
    assert s.status("ev-0129") == EventStatus.COMPLETED


def test_a_pending_entry_records_which_event_and_step_it_belongs_to() -> None:
    s = Storms(size=101)
    s.lost(101)
    entry = s.pending.get(HUB, "dev-0100")
    assert isinstance(entry, PendingHubStep)
    assert (entry.event_id, entry.action, entry.claim) == ("ev-0100", "disable", None)


def test_while_steps_wait_a_revoked_devices_hub_identity_is_not_read_and_no_warning_says_absent() -> None:
    s = Storms(size=130)
    s.lost(101)  # the 101st joined: the set has a waiting step
    reads = s.hub.calls["get"]
    outcome = s.engine.apply(s.event("ev-0101", "dev-0101"))
    assert outcome.status == EventStatus.IN_PROGRESS
    assert s.hub.calls["get"] == reads  # a storm costs the hub nothing per event
    assert not any("not found" in w for w in outcome.warnings)


def test_a_found_still_reads_the_hub_identity_while_steps_wait() -> None:
    s = Storms(size=130)
    s.lost(101)
    s.clock.advance(60)
    reads = s.hub.calls["get"]
    s.engine.apply(s.event("fd-0005", "dev-0005", kind="found"))
    assert s.hub.calls["get"] > reads


def test_an_event_that_finds_the_budget_spent_joins_the_set_without_reading_the_hub_identity() -> None:
    s = Storms(size=101)
    s.lost(100)  # 100 events x (read + write) spend the 200-op burst
    reads = s.hub.calls["get"]
    outcome = s.engine.apply(s.event("ev-0100", "dev-0100"))
    assert outcome.status == EventStatus.IN_PROGRESS
    assert s.hub.calls["get"] == reads  # reading would hold the event on the hub's 429s
    assert s.hub_step("ev-0100").after == PENDING_AFTER
    assert not any("not found" in w for w in outcome.warnings)


def test_a_set_below_the_job_threshold_waits_while_the_storm_fills_it_and_goes_by_one_job() -> None:
    s = Storms(size=150, threshold=20)
    s.lost(105)  # the first 100 went direct; 5 wait: below the threshold
    joined: list[int] = []

    def storm_goes_on(seconds: float) -> None:  # while the flush waits, 25 more events join the set
        s.clock.sleep(seconds)
        if not joined:
            joined.append(25)
            s.lost(25, start=105)

    finished = flush.flush(HUB, replace(s.storm, sleep=storm_goes_on), s.ports(), last_delivery=False)
    assert finished == 30
    assert [len(job) for job in s.jobs.jobs] == [30]  # one job, no bulk call
    assert all(s.status(f"ev-{n:04d}") == EventStatus.COMPLETED for n in range(130))


def test_a_lone_waiting_step_is_applied_by_a_bulk_call_after_a_short_wait() -> None:
    s = Storms(size=101, threshold=20)
    s.lost(101)
    began = s.clock()
    assert s.drain() == 1
    assert s.jobs.jobs == []
    assert s.hub_step("ev-0100").after == "bulk call"
    assert s.clock() - began <= flush.GATHER_QUIET + 1


def test_a_small_set_goes_by_one_bulk_call_that_carries_each_devices_own_status_reason() -> None:
    s = Storms(size=110, threshold=20)
    s.lost(100)
    for n in range(100, 110):
        s.engine.apply(s.event(f"ev-{n:04d}", f"dev-{n:04d}", note=f"pallet 7 item {n}"))
    s.clock.advance(60)
    calls = len(s.hub.bulk_calls)
    assert s.drain() == 10
    assert [size for _, size, _ in s.hub.bulk_calls[calls:]] == [10]  # not one call per reason
    assert s.device("dev-0103").status_reason == "pallet 7 item 103"
    assert s.device("dev-0107").status_reason == "pallet 7 item 107"
