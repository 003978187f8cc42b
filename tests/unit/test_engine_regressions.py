"""Regressions of issue 11 against ``Engine.apply`` and the work-queue handler, with the port fakes.

Each test reproduces one item of the issue (reused eventIds, racing events on one device, forged or
duplicated work messages, a poisoned batch and its recovery, unauthorised force, concurrent duplicates) and
pins what must hold instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import pytest

from shared.adapters.journal_memory import InMemoryJournal
from shared.errors import AuthFailed, Transient
from shared.events import LifecycleEvent, parse_event
from shared.lifecycle import BatchState, EmissionState
from shared.model import AttestationType, HubDeviceStatus, ProvisioningStatus
from shared.policy import DEFAULT_POLICY
from shared.ports import Tally
from shared.revocation import plan_revocation
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
from unprovision.group.inprocess import GroupWork
from unprovision.outcomes import Answer, Outcome
from unprovision.service import handle_event, handle_work_batch
from unprovision.throttle import HubBudget, InMemoryRateLimiter
from unprovision.wiring import Services

HUB = "hub-a.example"
HUBS = ("hub-a.example", "hub-b.example")


def device_event(event_id: str = "ev-1", type_: str = "lost", target: str = "dev-1",
                 **fields: Any) -> LifecycleEvent:
    return parse_event({"eventId": event_id, "type": type_, "registrationId": target,
                        "occurredAt": "2025-01-31T12:00:00Z", "source": "tracker", **fields})


def group_event(event_id: str = "grp-ev") -> LifecycleEvent:
    return parse_event({"eventId": event_id, "type": "compromised", "enrollmentGroupId": "fleet-grp",
                        "occurredAt": "2025-01-31T12:00:00Z", "source": "soc"})


class SlowDps(FakeProvisioningService):
    """Every read and write takes ``delay`` seconds of real time, so concurrent events overlap."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def hit(self, op: str, arg: Any = None) -> None:
        time.sleep(self.delay)
        super().hit(op, arg)


class Devices:
    """DPS with devices that have their own (TPM) enrollment, one hub, a journal, an engine."""

    def __init__(self, *names: str, delay: float = 0.0, force_sources: frozenset[str] = frozenset()) -> None:
        self.dps = SlowDps(delay) if delay else FakeProvisioningService()
        self.registry = FakeDeviceRegistry(HUB, call_delay=delay)
        self.registries = FakeDeviceRegistries([self.registry])
        self.journal = InMemoryJournal()
        self.notifier = RecordingNotifier()
        for name in names or ("dev-1",):
            self.dps.add_enrollment(name, attestation=AttestationType.TPM)
            self.dps.add_registration(name, HUB)
            self.registry.add_device(name)
        self.engine = Engine(dps=self.dps, registries=self.registries, journal=self.journal,
                             policy=DEFAULT_POLICY, group_work=GroupWork(), notifier=self.notifier,
                             group_cache=GroupCache(), force_sources=force_sources)

    def mutations(self) -> int:
        return self.dps.mutation_count() + self.registries.mutation_count()

    def state(self, name: str = "dev-1") -> tuple[ProvisioningStatus, HubDeviceStatus]:
        return self.dps.enrollments[name].status, self.registry.devices[name].status


class Fleet:
    """A group over two hubs, with the engine in scale-out mode (work queue set)."""

    def __init__(self, size: int = 50) -> None:
        self.clock = FakeClock()
        self.dps = FakeProvisioningService()
        self.dps.add_group("fleet-grp")
        self.registries = FakeDeviceRegistries()
        self.hubs = {h: self.registries.add(FakeDeviceRegistry(h, clock=self.clock)) for h in HUBS}
        for n in range(size):
            hub = HUBS[n % 2]
            self.dps.add_registration(f"dev-{n:04d}", hub, group_id="fleet-grp")
            self.hubs[hub].add_device(f"dev-{n:04d}")
        self.hubs[HUBS[0]].add_device("victim-1")  # on a hub of the group, but not in the group
        self.limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=10_000, burst=10_000),
                                           clock=self.clock)
        self.journal = InMemoryJournal()
        self.queue = RecordingWorkQueue()
        self.notifier = RecordingNotifier()
        self.engine = Engine(dps=self.dps, registries=self.registries, journal=self.journal,
                             policy=DEFAULT_POLICY, group_work=GroupWork(limiter=self.limiter,
                                                                         sleep=self.clock.sleep),
                             notifier=self.notifier, work_queue=self.queue, group_cache=GroupCache())
        # What ``handle_work_batch`` reads from the services (the rest is not used by it).
        self.services = cast(Services, SimpleNamespace(
            journal=self.journal, registries=self.registries, rate_limiter=self.limiter,
            notifier=self.notifier))

    def deliver(self, message: Any, *, last_delivery: bool = False) -> Outcome:
        return handle_work_batch(json.dumps(message), self.services, last_delivery=last_delivery)

    def disabled(self) -> int:
        return sum(1 for r in self.hubs.values() for d in r.devices.values()
                   if d.status is HubDeviceStatus.DISABLED)

    def bulk_calls(self) -> int:
        return sum(len(r.bulk_calls) for r in self.hubs.values())


def run_concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start every call at once (a barrier); results (or the exception raised) in the order given."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - reported to the test as a result
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


# -- item 1: an eventId reused with another body -----------------------------------------------------------


def test_a_reused_event_id_with_another_body_answers_conflict_journals_a_rejection_changes_nothing() -> None:
    w = Devices("kiosk-sk-006", "thermo-sk-011")
    first = w.engine.apply(device_event("reuse-1", "lost", "kiosk-sk-006"))
    assert first.status == "completed"
    stored = w.journal.get("reuse-1")
    before = (w.mutations(), len(w.notifier.published))

    reused = w.engine.apply(device_event("reuse-1", "stolen", "thermo-sk-011"))

    assert reused.status == Answer.CONFLICT
    assert reused.error is not None
    assert reused.error.startswith("eventId: ")
    assert "kiosk-sk-006" in reused.error  # says which event holds the ID
    assert reused.steps == ()
    assert (w.mutations(), len(w.notifier.published)) == before
    assert w.state("thermo-sk-011") == (ProvisioningStatus.ENABLED, HubDeviceStatus.ENABLED)
    assert w.journal.get("reuse-1") == stored  # the first event's record is untouched
    rejections = list(w.journal.iter_rejections("reuse-1"))
    assert len(rejections) == 1
    assert [e["field"] for e in rejections[0].errors] == ["eventId"]
    assert "thermo-sk-011" in rejections[0].body  # the refused body is kept as evidence

    # The same body re-sent (fields in another order) is the same event: its stored outcome, no change.
    again = w.engine.apply(parse_event({"source": "tracker", "occurredAt": "2025-01-31T12:00:00Z",
                                        "registrationId": "kiosk-sk-006", "type": "lost",
                                        "eventId": "reuse-1"}))
    assert again == Outcome.from_record(w.journal.get("reuse-1"))  # type: ignore[arg-type]
    assert (again.status, again.steps) == (first.status, first.steps)
    assert (w.mutations(), len(w.notifier.published)) == before
    assert len(list(w.journal.iter_rejections("reuse-1"))) == 1


def test_a_reused_event_id_is_a_conflict_in_a_dry_run_too_but_journals_nothing() -> None:
    w = Devices("kiosk-sk-006", "thermo-sk-011")
    w.engine.apply(device_event("reuse-1", "lost", "kiosk-sk-006"))
    outcome = w.engine.apply(device_event("reuse-1", "stolen", "thermo-sk-011"), dry_run=True)
    assert outcome.status == Answer.CONFLICT
    assert list(w.journal.iter_rejections()) == []


# -- item 3: racing stolen and found on one device ---------------------------------------------------------


def _final(w: Devices, outcomes: dict[str, Outcome]) -> tuple[Any, ...]:
    return (outcomes["stolen"].status, outcomes["found"].status, *w.state())


def _sequential(first: str) -> tuple[Any, ...]:
    w = Devices()
    assert w.engine.apply(device_event("lost-1", "lost")).status == "completed"
    events = {"stolen": device_event("stolen-1", "stolen"), "found": device_event("found-1", "found")}
    outcomes = {}
    for name in (first, *(n for n in events if n != first)):
        outcomes[name] = w.engine.apply(events[name])
    return _final(w, outcomes)


def _recorded_claim(claim: Callable[[str, str, float], bool], claims: list[bool], target: str,
                    holder: str, ttl_seconds: float) -> bool:
    took = claim(target, holder, ttl_seconds)
    claims.append(took)
    return took


def test_racing_stolen_and_found_on_one_device_end_as_a_sequential_order_and_never_undo_the_theft() -> None:
    orders = {_sequential("stolen"), _sequential("found")}
    # Stolen first: the found is refused. Found first: it undoes the lost, then the theft disables again.
    assert orders == {
        ("completed", "refused", ProvisioningStatus.DISABLED, HubDeviceStatus.DISABLED),
        ("completed", "completed", ProvisioningStatus.DISABLED, HubDeviceStatus.DISABLED),
    }
    for trial in range(4):
        w = Devices(delay=0.02)  # every port call takes 20 ms: the two events overlap without the lease
        assert w.engine.apply(device_event("lost-1", "lost")).status == "completed"
        claims: list[bool] = []
        claim = w.journal.claim_target

        w.journal.claim_target = partial(_recorded_claim, claim, claims)  # type: ignore[method-assign]
        stolen, found = run_concurrently([
            partial(w.engine.apply, device_event(f"stolen-{trial}", "stolen")),
            partial(w.engine.apply, device_event(f"found-{trial}", "found")),
        ])
        outcomes = {"stolen": stolen, "found": found}
        assert all(isinstance(o, Outcome) for o in outcomes.values()), outcomes
        assert _final(w, outcomes) in orders
        assert w.state() == (ProvisioningStatus.DISABLED, HubDeviceStatus.DISABLED)
        assert False in claims  # the events did meet: one waited for the other's lease


def test_after_a_completed_stolen_only_a_forced_found_enables_the_device() -> None:
    w = Devices(force_sources=frozenset({"tracker"}))
    assert w.engine.apply(device_event("lost-1", "lost")).status == "completed"
    assert w.engine.apply(device_event("stolen-1", "stolen")).status == "completed"
    assert w.engine.apply(device_event("found-1", "found")).status == "refused"
    assert w.engine.apply(device_event("lost-2", "lost")).status == "completed"
    assert w.engine.apply(device_event("found-2", "found")).status == "refused"  # whatever came after
    assert w.state() == (ProvisioningStatus.DISABLED, HubDeviceStatus.DISABLED)
    assert w.engine.apply(device_event("found-3", "found", force=True)).status == "completed"
    assert w.state() == (ProvisioningStatus.ENABLED, HubDeviceStatus.ENABLED)


# -- item 5: forged work messages --------------------------------------------------------------------------


def _snapshot(fleet: Fleet) -> tuple[Any, ...]:
    record = fleet.journal.get("grp-ev")
    batches = fleet.journal.batches("grp-ev", 1, 1)
    devices = {h: dict(r.devices) for h, r in fleet.hubs.items()}
    return record, batches, devices, fleet.bulk_calls(), len(fleet.notifier.published)


@pytest.mark.parametrize("message", [
    pytest.param({"eventId": "grp-ev", "groupId": "fleet-grp", "hub": HUBS[0], "action": "delete",
                  "deviceIds": ["victim-1"], "batchIndex": 0, "batches": 1}, id="names-devices"),
    pytest.param({"eventId": "grp-ev", "stepIndex": 1, "run": 1, "batch": 1, "deviceIds": ["victim-1"]},
                 id="valid-ref-plus-deviceIds"),
    pytest.param({"eventId": "grp-ev", "stepIndex": 1, "run": 1, "batch": 99}, id="unknown-batch"),
    pytest.param({"eventId": "grp-ev", "stepIndex": 1, "run": 7, "batch": 1}, id="unknown-run"),
    pytest.param({"eventId": "grp-ev", "stepIndex": 0, "run": 1, "batch": 1}, id="not-a-group-step"),
    pytest.param({"eventId": "no-such-event", "stepIndex": 1, "run": 1, "batch": 1}, id="unknown-event"),
    pytest.param({"eventId": "grp-ev", "stepIndex": 1, "run": 1, "batch": True}, id="bool-as-number"),
    pytest.param({"eventId": "grp-ev", "stepIndex": "1", "run": 1, "batch": 1}, id="string-number"),
])
def test_a_forged_work_message_is_rejected_journaled_and_changes_nothing(message: dict[str, Any]) -> None:
    fleet = Fleet()
    assert fleet.engine.apply(group_event()).status == "in_progress"
    before = _snapshot(fleet)

    outcome = fleet.deliver(message)

    assert outcome.status == "rejected"
    assert _snapshot(fleet) == before
    assert fleet.hubs[HUBS[0]].devices["victim-1"].status is HubDeviceStatus.ENABLED
    rejections = list(fleet.journal.iter_rejections())
    assert len(rejections) == 1
    assert json.loads(rejections[0].body) == message
    assert rejections[0].errors  # with the field(s) and reason(s)
    # The real batches still apply, and only their own devices.
    for real in fleet.queue.messages:
        fleet.deliver(real)
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "completed"
    assert fleet.disabled() == 50
    assert fleet.hubs[HUBS[0]].devices["victim-1"].status is HubDeviceStatus.ENABLED


def test_a_work_message_with_extra_keys_names_them_in_the_rejection() -> None:
    fleet = Fleet()
    fleet.engine.apply(group_event())
    outcome = fleet.deliver({"eventId": "grp-ev", "stepIndex": 1, "run": 1, "batch": 1,
                             "deviceIds": ["victim-1"]})
    assert outcome.status == "rejected"
    (rejection,) = fleet.journal.iter_rejections()
    assert {e["field"] for e in rejection.errors} == {"deviceIds"}
    assert fleet.journal.batches("grp-ev", 1, 1)[0].state is BatchState.EMITTED  # not applied


# -- item 10: duplicate deliveries of a group event and of its batches --------------------------------------


def test_30_concurrent_deliveries_of_a_group_event_emit_once_and_duplicate_batches_apply_once() -> None:
    fleet = Fleet(size=50)
    outcomes = run_concurrently([lambda: fleet.engine.apply(group_event())] * 30)
    assert all(isinstance(o, Outcome) and o.status == "in_progress" for o in outcomes), outcomes
    emission = fleet.journal.latest_emission("grp-ev", 1)
    assert emission is not None
    assert (emission.run, emission.state, emission.batches) == (1, EmissionState.RECORDED, 2)
    batches = fleet.journal.batches("grp-ev", 1, 1)
    assert sorted(len(b.device_ids) for b in batches) == [25, 25]
    assert {(m["run"], m["batch"]) for m in fleet.queue.messages} == {(1, 1), (1, 2)}
    assert fleet.dps.calls["set_group_status"] == 1
    assert fleet.disabled() == 0

    # Every message delivered many times, concurrently: each batch is applied by exactly one delivery.
    deliveries = [m for m in fleet.queue.messages for _ in range(4)]
    results = run_concurrently([partial(fleet.deliver, m) for m in deliveries])
    assert all(isinstance(r, Outcome) for r in results), results
    assert fleet.bulk_calls() == 2
    assert fleet.disabled() == 50
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert record.status == "completed"
    assert [b.tally for b in fleet.journal.batches("grp-ev", 1, 1)] == [Tally(changed=25)] * 2
    assert (record.steps[1].outcome, record.steps[1].after) == (
        "done", "batches 2: changed=50 unchanged=0 failed=0")
    assert [p["status"] for p in fleet.notifier.published] == ["completed"]


# -- item 4: a batch poisoned on its last delivery, then the event resumed ----------------------------------


def test_a_batch_failing_on_its_last_delivery_fails_the_event_and_a_re_send_resumes_just_that_batch() -> None:
    fleet = Fleet(size=50)
    sick = fleet.hubs[HUBS[1]]
    sick.fail_on("bulk_disable", 1, Transient("503 from hub-b"))
    sick.fail_on("bulk_disable", 2, Transient("503 from hub-b"))
    assert fleet.engine.apply(group_event()).status == "in_progress"
    messages = list(fleet.queue.messages)
    batch_of = {b.hub: b for b in fleet.journal.batches("grp-ev", 1, 1)}
    sick_ref = {"eventId": "grp-ev", "stepIndex": 1, "run": 1, "batch": batch_of[HUBS[1]].number}
    healthy_ref = {"eventId": "grp-ev", "stepIndex": 1, "run": 1, "batch": batch_of[HUBS[0]].number}

    assert fleet.deliver(healthy_ref).status == "in_progress"
    with pytest.raises(Transient):  # not the last delivery: handed back for redelivery
        fleet.deliver(sick_ref)
    assert fleet.journal.get("grp-ev").status == "in_progress"  # type: ignore[union-attr]
    outcome = fleet.deliver(sick_ref, last_delivery=True)  # the last one: settles failed, no silent poison

    assert outcome.status == "failed"
    assert outcome.error == "25 devices in 1 batches not purged; re-send the event to resume them"
    settled = {b.hub: (b.state, b.tally) for b in fleet.journal.batches("grp-ev", 1, 1)}
    assert settled == {HUBS[0]: (BatchState.APPLIED, Tally(changed=25)),
                       HUBS[1]: (BatchState.FAILED, Tally(failed=25))}
    assert fleet.disabled() == 25
    assert fleet.notifier.published[-1]["status"] == "failed"

    # The fault is lifted; the same event re-sent resumes exactly the failed batch.
    fleet.queue.messages.clear()
    healthy_calls = len(fleet.hubs[HUBS[0]].bulk_calls)
    resumed = fleet.engine.apply(group_event())
    assert resumed.status == "in_progress"
    assert fleet.queue.messages == [sick_ref]
    emission = fleet.journal.latest_emission("grp-ev", 1)
    assert emission is not None
    assert emission.run == 1  # no new emission: the same recorded batches
    assert fleet.dps.calls["set_group_status"] == 1  # the DPS step is not repeated
    final = fleet.deliver(fleet.queue.messages[0])
    assert final.status == "completed"
    assert fleet.disabled() == 50
    assert len(fleet.hubs[HUBS[0]].bulk_calls) == healthy_calls  # the healthy batch was not applied again
    record = fleet.journal.get("grp-ev")
    assert record is not None
    assert (record.status, record.error) == ("completed", None)
    assert record.steps[1].after == "batches 2: changed=50 unchanged=0 failed=0"
    assert fleet.notifier.published[-1]["status"] == "completed"
    assert messages  # (the first emission sent both batches)

    # Finished now: one more re-send answers the stored outcome and sends nothing.
    fleet.queue.messages.clear()
    assert fleet.engine.apply(group_event()).status == "completed"
    assert fleet.queue.messages == []


# -- item 15: force needs authority ------------------------------------------------------------------------


def _stolen_device(force_sources: frozenset[str] = frozenset()) -> Devices:
    w = Devices(force_sources=force_sources)
    assert w.engine.apply(device_event("stolen-1", "stolen")).status == "completed"
    return w


def test_force_without_authority_answers_forbidden_journals_a_rejection_and_changes_nothing() -> None:
    w = _stolen_device(force_sources=frozenset({"soc-console"}))
    before = (w.mutations(), w.state(), len(w.notifier.published))
    outcome = w.engine.apply(device_event("found-1", "found", force=True))  # source "tracker" is not listed
    assert outcome.status == Answer.FORBIDDEN
    assert outcome.error is not None
    assert outcome.error.startswith("force: ")
    assert (w.mutations(), w.state(), len(w.notifier.published)) == before
    assert w.journal.get("found-1") is None  # the eventId is not claimed by a refused force
    (rejection,) = w.journal.iter_rejections("found-1")
    assert [e["field"] for e in rejection.errors] == ["force"]


def test_force_with_force_allowed_or_from_a_listed_source_proceeds() -> None:
    w = _stolen_device()
    outcome = w.engine.apply(device_event("found-1", "found", force=True), force_allowed=True)
    assert outcome.status == "completed"
    assert w.state() == (ProvisioningStatus.ENABLED, HubDeviceStatus.ENABLED)
    assert list(w.journal.iter_rejections()) == []

    listed = _stolen_device(force_sources=frozenset({"tracker"}))
    assert listed.engine.apply(device_event("found-1", "found", force=True)).status == "completed"
    assert listed.state() == (ProvisioningStatus.ENABLED, HubDeviceStatus.ENABLED)


# -- item 16: concurrent duplicates of one single-device event ----------------------------------------------


def test_concurrent_duplicates_of_a_device_event_answer_its_status_and_the_journal_keeps_the_change() -> None:
    w = Devices(delay=0.005)
    w.engine = replace(w.engine, lease_wait=60.0)
    outcomes = run_concurrently([lambda: w.engine.apply(device_event("dup-1", "lost"))] * 30)
    assert all(isinstance(o, Outcome) for o in outcomes), outcomes
    assert {o.status for o in outcomes} == {"completed"}
    assert w.state() == (ProvisioningStatus.DISABLED, HubDeviceStatus.DISABLED)
    assert w.dps.calls["set_enrollment_status"] == 1  # applied once
    assert w.registry.calls["disable"] == 1
    record = w.journal.get("dup-1")
    assert record is not None
    assert record.status == "completed"
    assert [(s.kind, s.outcome, s.before, s.after) for s in record.steps] == [
        ("EnrollmentDisabled", "done", "enabled", "disabled"),
        ("HubIdentityDisabled", "done", "enabled", "disabled"),
    ]
    assert all(o.steps == record.steps for o in outcomes)
    assert len(w.notifier.published) == 1


def test_an_event_id_reused_concurrently_on_two_targets_applies_one_body_and_refuses_the_other() -> None:
    # The two bodies lock different targets, so the lease does not serialise them: both pass the identity
    # check before either is journaled (the barrier in the planner makes sure). The one that begins second
    # must still be refused as a conflict, never run the first one's plan as if it were its own.
    w = Devices("kiosk-sk-006", "thermo-sk-011")
    both_planning = threading.Barrier(2)

    def planner(event: LifecycleEvent, policy: Any, snapshot: Any) -> Any:
        both_planning.wait(timeout=10)
        return plan_revocation(event, policy, snapshot)

    engine = replace(w.engine, planner=planner)
    lost, stolen = run_concurrently([
        partial(engine.apply, device_event("reuse-2", "lost", "kiosk-sk-006")),
        partial(engine.apply, device_event("reuse-2", "stolen", "thermo-sk-011")),
    ])
    assert all(isinstance(o, Outcome) for o in (lost, stolen)), (lost, stolen)
    assert sorted([str(lost.status), str(stolen.status)]) == ["completed", "conflict"]
    record = w.journal.get("reuse-2")
    assert record is not None
    winner, loser = ("kiosk-sk-006", "thermo-sk-011") if lost.status == "completed" else (
        "thermo-sk-011", "kiosk-sk-006")
    assert record.target == winner
    assert w.state(winner) == (ProvisioningStatus.DISABLED, HubDeviceStatus.DISABLED)
    assert w.state(loser) == (ProvisioningStatus.ENABLED, HubDeviceStatus.ENABLED)
    assert w.dps.calls["set_enrollment_status"] == 1  # the winner's plan ran once, not once per body
    (rejection,) = w.journal.iter_rejections("reuse-2")
    assert loser in rejection.body


def test_a_permanent_error_of_a_reused_event_id_never_fails_the_event_that_holds_the_id() -> None:
    # Two bodies with one eventId on two targets (so two leases); the second body's inventory read fails
    # permanently while the first is being applied. The entry point journals that failure, but it must not
    # finish the first body's event as failed.
    w = Devices("kiosk-sk-006", "thermo-sk-011", delay=0.02)
    both_planning = threading.Barrier(2)

    def planner(event: LifecycleEvent, policy: Any, snapshot: Any) -> Any:
        both_planning.wait(timeout=10)
        if event.target == "thermo-sk-011":
            time.sleep(0.05)  # the kiosk event has begun meanwhile and is applying its steps
            raise AuthFailed("DPS refused our credentials")
        return plan_revocation(event, policy, snapshot)

    engine = replace(w.engine, planner=planner)
    services = cast(Services, SimpleNamespace(engine=engine, journal=w.journal))
    lost, stolen = run_concurrently([
        partial(handle_event, device_event("reuse-3", "lost", "kiosk-sk-006"), services),
        partial(handle_event, device_event("reuse-3", "stolen", "thermo-sk-011"), services),
    ])
    assert isinstance(lost, Outcome), lost
    assert lost.status == "completed"
    assert isinstance(stolen, Outcome), stolen
    assert stolen.status == "failed"
    record = w.journal.get("reuse-3")
    assert record is not None
    assert (record.target, record.status, record.error) == ("kiosk-sk-006", "completed", None)
    assert w.state("kiosk-sk-006") == (ProvisioningStatus.DISABLED, HubDeviceStatus.DISABLED)
    assert w.state("thermo-sk-011") == (ProvisioningStatus.ENABLED, HubDeviceStatus.ENABLED)
    (rejection,) = w.journal.iter_rejections("reuse-3")  # the failing body is kept, as a conflict
    assert [e["field"] for e in rejection.errors] == ["eventId"]
    assert "thermo-sk-011" in rejection.body


def test_a_batch_is_applied_while_the_same_batch_of_an_event_id_differing_only_in_case_is_held() -> None:
    fleet = Fleet()
    fleet.engine.apply(group_event())
    message = fleet.queue.messages[0]
    twin = scaleout.BatchRef("GRP-EV", message["stepIndex"], message["run"], message["batch"])
    assert fleet.journal.claim_target(scaleout.batch_lease_key(twin), "another delivery", 60.0)

    fleet.deliver(message)

    assert fleet.bulk_calls() == 1
    applied = [b for b in fleet.journal.batches("grp-ev", message["stepIndex"], message["run"])
               if b.number == message["batch"]]
    assert [b.state for b in applied] == [BatchState.APPLIED]
