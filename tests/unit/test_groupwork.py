"""Group fan-out: streaming, per-hub bulk batches, throttle, progress, scale-out batches and completion."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.journal_memory import InMemoryJournal
from shared.errors import Throttled
from shared.events import LifecycleEvent, parse_event
from shared.model import HubDeviceStatus, ProvisioningStatus
from shared.plan import StepKind
from shared.policy import DEFAULT_POLICY
from tests.fakes import (
    FakeClock,
    FakeDeviceRegistries,
    FakeDeviceRegistry,
    FakeProvisioningService,
    RecordingNotifier,
    RecordingWorkQueue,
)
from unprovision.groupwork import (
    GroupWork,
    Progress,
    apply_batch,
    batch_progress,
    bulk_call,
    iter_batches,
    purge_group,
)
from unprovision.inventory import GroupCache
from unprovision.orchestrator import apply
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
    outcome = apply(group_event(), dps=fleet.dps, registries=fleet.registries, journal=fleet.journal,
                    policy=DEFAULT_POLICY, group_work=fleet.work(), group_cache=GroupCache())
    assert outcome.status == "completed"
    assert [(s.kind, s.outcome) for s in outcome.steps] == [
        ("GroupDisabled", "done"), ("GroupDevicesDisabled", "done")]
    assert "changed=250" in (outcome.steps[1].after or "")
    assert fleet.dps.groups["fleet-grp"].status is ProvisioningStatus.DISABLED
    assert fleet.disabled() == 250


def _scale_out(fleet: Fleet) -> Any:
    return apply(group_event(), dps=fleet.dps, registries=fleet.registries, journal=fleet.journal,
                 policy=DEFAULT_POLICY, notifier=fleet.notifier, group_cache=GroupCache(),
                 group_work=fleet.work(scale_out=True, queue=fleet.queue))


def test_scale_out_emits_per_hub_batches_that_apply_batch_consumes_until_the_event_completes() -> None:
    fleet = Fleet(size=450)
    outcome = _scale_out(fleet)
    assert outcome.status == "in_progress"
    assert fleet.disabled() == 0  # the work is queued, not done
    messages = fleet.queue.messages
    assert len(messages) == 6  # 225 per hub: 100 + 100 + 25
    assert all(len(m["deviceIds"]) <= 100 for m in messages)
    assert all({m["hub"]} <= set(HUBS) and m["action"] == "disable" for m in messages)
    for message in messages[:-1]:
        apply_batch(message, fleet.registries, fleet.journal, fleet.limiter, sleep=fleet.clock.sleep,
                    notifier=fleet.notifier)
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "in_progress"
    assert batch_progress(record, 1) == (5, 6)
    apply_batch(messages[-1], fleet.registries, fleet.journal, fleet.limiter, sleep=fleet.clock.sleep,
                notifier=fleet.notifier)
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "completed"
    assert fleet.disabled() == 450
    assert len(fleet.notifier.published) == 1
    final = fleet.notifier.published[0]
    assert final["status"] == "completed"
    assert final["steps"][1]["after"] == "batches 6/6: changed=450 unchanged=0 failed=0"


def test_a_redelivered_batch_is_counted_once_and_a_late_duplicate_changes_nothing() -> None:
    fleet = Fleet(size=150)
    _scale_out(fleet)
    first, second = fleet.queue.messages
    for message in (first, first, second, second):
        apply_batch(message, fleet.registries, fleet.journal, fleet.limiter, sleep=fleet.clock.sleep,
                    notifier=fleet.notifier)
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "completed"
    assert len(fleet.notifier.published) == 1
    # Accepted bulk calls (a 429 from the simulated hub is retried and not counted): the late duplicate
    # of the second batch arrived after completion and made no call.
    assert sum(len(r.bulk_calls) for r in fleet.hubs.values()) == 3


def test_scale_out_emission_is_lazy_too() -> None:
    fleet = Fleet(size=1_000)
    pulled_at_send: list[int] = []
    fleet.queue.on_send = lambda _m: pulled_at_send.append(fleet.dps.pulled["fleet-grp"])
    _scale_out(fleet)
    assert pulled_at_send[0] < 200
    assert len(pulled_at_send) == 10


def test_a_redelivered_group_event_does_not_emit_its_batches_twice() -> None:
    fleet = Fleet(size=150)
    _scale_out(fleet)
    again = _scale_out(fleet)
    assert again.status == "in_progress"
    assert len(fleet.queue.messages) == 2


def test_a_batch_for_an_unconfigured_hub_fails_the_group_event() -> None:
    fleet = Fleet(size=10)
    fleet.dps.add_registration("stray", "unknown.example", group_id="fleet-grp")
    _scale_out(fleet)
    for message in fleet.queue.messages:
        apply_batch(message, fleet.registries, fleet.journal, fleet.limiter, sleep=fleet.clock.sleep)
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "failed"
    assert "1 devices not purged" in (record.error or "")
