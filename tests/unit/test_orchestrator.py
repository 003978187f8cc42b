"""``Engine.apply`` with the port fakes: order, confirmation, idempotence, crash/resume, failures.

Some tests hand-build plans (to pin one behaviour); the rest go event -> planner -> apply end to end.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from shared.adapters.journal_memory import InMemoryJournal
from shared.errors import NotFound, Permanent, Transient
from shared.events import LifecycleEvent, parse_event
from shared.model import AttestationType, HubDeviceStatus, InventorySnapshot, ProvisioningStatus
from shared.plan import Plan, Step, StepKind, StepOutcome
from shared.policy import DEFAULT_POLICY
from shared.ports import Change
from tests.fakes import (
    FakeDeviceRegistries,
    FakeDeviceRegistry,
    FakeProvisioningService,
    RecordingNotifier,
)
from unprovision.engine.core import Engine
from unprovision.engine.inventory import GroupCache
from unprovision.group.inprocess import GroupWork

HUB = "hub-a.example"


def event(**fields: Any) -> LifecycleEvent:
    body = {"eventId": "ev-1", "type": "lost", "registrationId": "dev-1",
            "occurredAt": "2025-01-31T12:00:00Z", "source": "tracker", **fields}
    return parse_event({k: v for k, v in body.items() if v is not None})


class World:
    """DPS + one hub + journal + notifier, sharing one call log to see cross-service order."""

    def __init__(self, *, own_enrollment: bool = True, hub: str = HUB) -> None:
        self.log: list[tuple[str, Any]] = []
        self.dps = FakeProvisioningService(log=self.log)
        self.registry = FakeDeviceRegistry(HUB, log=self.log)
        self.registries = FakeDeviceRegistries([self.registry])
        self.journal = InMemoryJournal()
        self.notifier = RecordingNotifier()
        self.cache = GroupCache()
        self.dps.add_group("grp-sym", attestation=AttestationType.SYMMETRIC_KEY)
        if own_enrollment:
            self.dps.add_enrollment("dev-1", attestation=AttestationType.TPM)
            self.dps.add_registration("dev-1", hub)
        else:
            self.dps.add_registration("dev-1", hub, group_id="grp-sym")
        self.registry.add_device("dev-1")

    def engine(self, **fields: Any) -> Engine:
        """Built from the world's current fakes (a test may swap ``dps``); ``fields`` override any field."""
        engine = Engine(dps=self.dps, registries=self.registries, journal=self.journal, policy=DEFAULT_POLICY,
                        group_work=GroupWork(), notifier=self.notifier, group_cache=self.cache)
        return replace(engine, **fields)

    def apply(self, ev: LifecycleEvent | None = None, *, planner: Any = None, **kwargs: Any) -> Any:
        engine = self.engine(planner=planner) if planner is not None else self.engine()
        return engine.apply(ev or event(), **kwargs)

    def mutations(self) -> int:
        return self.dps.mutation_count() + self.registries.mutation_count()


def fixed(plan: Plan) -> Any:
    """A planner that returns a hand-built plan (to pin engine behaviour independent of policy)."""
    return lambda _event, _policy, _snapshot: plan


def two_step_plan(hub: str | None = HUB) -> Plan:
    return Plan("ev-1", "lost", "dev-1", steps=(
        Step(StepKind.ENROLLMENT_DISABLED, "dev-1", "own enrollment first"),
        Step(StepKind.HUB_IDENTITY_DISABLED, "dev-1", "then the hub", hub=hub,
             params={"statusReason": "lost"}),
    ))


def test_dps_step_runs_first_is_confirmed_by_a_re_read_then_the_hub_step_runs() -> None:
    w = World()
    outcome = w.apply(planner=fixed(two_step_plan()))
    assert outcome.status == "completed"
    ops = [op for op, _ in w.log]
    assert ops[-3:] == ["set_enrollment_status", "get_enrollment", "disable"]
    assert w.dps.enrollments["dev-1"].status is ProvisioningStatus.DISABLED
    assert w.registry.devices["dev-1"].status is HubDeviceStatus.DISABLED
    assert w.registry.devices["dev-1"].status_reason == "lost"
    assert [(s.kind, s.outcome) for s in outcome.steps] == [
        ("EnrollmentDisabled", "done"), ("HubIdentityDisabled", "done")]


def test_a_lost_device_with_its_own_enrollment_is_revoked_end_to_end_in_six_round_trips() -> None:
    w = World()
    w.cache.groups(w.dps)  # warm cache: the steady state of a running Function instance
    w.log.clear()
    outcome = w.apply()
    assert outcome.status == "completed"
    assert [s.kind for s in outcome.steps] == ["EnrollmentDisabled", "HubIdentityDisabled"]
    assert len(w.log) <= 6, w.log
    # the outcome message: the outcome plus the correlationId (the eventId when the event has none)
    assert w.notifier.published == [{**outcome.to_dict(), "correlationId": "ev-1"}]
    json.dumps(outcome.to_dict())  # JSON-serialisable


def test_a_device_from_a_group_gets_a_disabled_blocking_enrollment_marked_with_the_event() -> None:
    w = World(own_enrollment=False)
    outcome = w.apply()
    assert outcome.status == "completed"
    blocking = w.dps.enrollments["dev-1"]
    assert blocking.status is ProvisioningStatus.DISABLED
    assert blocking.blocking_marker == "ev-1"
    assert w.registry.devices["dev-1"].status is HubDeviceStatus.DISABLED


def test_re_applying_a_completed_event_returns_the_stored_outcome_and_changes_nothing() -> None:
    w = World()
    first = w.apply()
    before = (w.mutations(), len(w.log), len(w.notifier.published))

    def must_not_plan(*_: Any) -> Plan:
        raise AssertionError("a completed event must not be planned again")

    second = w.apply(planner=must_not_plan)
    assert (w.mutations(), len(w.log), len(w.notifier.published)) == before
    assert second.status == "completed"
    assert second.steps == first.steps


def test_a_crash_after_the_dps_step_resumes_without_repeating_it() -> None:
    w = World()
    w.registry.fail_on("disable", 1, Transient("hub timed out"))
    with pytest.raises(Transient):
        w.apply()
    record = w.journal.get("ev-1")
    assert record is not None
    assert record.status == "in_progress"
    assert [(s.kind, s.outcome) for s in record.steps] == [
        ("EnrollmentDisabled", "done"), ("HubIdentityDisabled", "failed")]
    outcome = w.apply()  # the host's redelivery
    assert outcome.status == "completed"
    assert w.dps.calls["set_enrollment_status"] == 1
    assert w.registry.calls["disable"] == 2
    assert [(s.kind, s.outcome) for s in outcome.steps] == [
        ("EnrollmentDisabled", "done"), ("HubIdentityDisabled", "done")]


def test_a_redelivery_resumes_with_the_stored_plan_even_if_the_world_changed() -> None:
    w = World()
    w.registry.fail_on("disable", 1)
    with pytest.raises(Transient):
        w.apply()
    calls: list[InventorySnapshot] = []

    def spy(*args: Any) -> Plan:
        calls.append(args[2])
        raise AssertionError("resume must use the journaled plan")

    assert w.apply(planner=spy).status == "completed"
    assert calls == []


def test_an_unconfigured_hub_is_a_recorded_failure_after_the_dps_step() -> None:
    w = World(hub="elsewhere.example")
    outcome = w.apply()
    assert outcome.status == "failed"
    assert any("elsewhere.example is not configured" in warning for warning in outcome.warnings)
    steps = {s.kind: s for s in outcome.steps}
    assert steps["EnrollmentDisabled"].outcome == "done"
    assert steps["HubIdentityDisabled"].outcome == "failed"
    assert "HubNotConfigured" in (steps["HubIdentityDisabled"].error or "")
    record = w.journal.get("ev-1")
    assert record is not None
    assert record.status == "failed"
    assert w.notifier.published[-1]["status"] == "failed"


class LyingDps(FakeProvisioningService):
    """Says DONE but changes nothing (a concurrent edit re-enabled it, or a broken adapter)."""

    def set_enrollment_status(self, registration_id: str, status: ProvisioningStatus) -> Change:
        self.hit("set_enrollment_status", registration_id)
        return Change(StepOutcome.DONE, "enabled", "disabled")


def test_a_dps_change_that_does_not_show_on_re_read_fails_the_event_before_the_hub() -> None:
    w = World()
    lying = LyingDps(log=w.log)
    lying.enrollments = w.dps.enrollments
    w.dps = lying
    outcome = w.apply(planner=fixed(two_step_plan()))
    assert outcome.status == "failed"
    assert "confirm" in (outcome.error or "")
    assert w.registry.calls["disable"] == 0
    assert w.registry.devices["dev-1"].status is HubDeviceStatus.ENABLED
    assert outcome.error == ("confirm: enrollment dev-1 is enabled after EnrollmentDisabled, "
                             "expected disabled")
    # The journal keeps the first successful attempt of a step (what DPS answered); the confirm's mismatch
    # fails the event, and no hub step was attempted.
    assert [s.kind for s in outcome.steps] == ["EnrollmentDisabled"]
    record = w.journal.get("ev-1")
    assert record is not None
    assert (record.status, record.error) == ("failed", outcome.error)


def test_a_permanent_dps_error_is_recorded_and_stops_before_the_hub() -> None:
    w = World()
    w.dps.fail_on("set_enrollment_status", 1, NotFound("enrollment vanished"))
    outcome = w.apply(planner=fixed(two_step_plan()))
    assert outcome.status == "failed"
    assert outcome.steps[0].outcome == "failed"
    assert "vanished" in (outcome.steps[0].error or "")
    assert w.registry.calls["disable"] == 0


def test_a_refused_plan_is_recorded_as_refused_and_changes_nothing() -> None:
    w = World()
    outcome = w.apply(event(type="found"))  # nothing was ever revoked: the planner refuses
    assert outcome.status == "refused"
    assert outcome.error
    assert w.mutations() == 0
    record = w.journal.get("ev-1")
    assert record is not None
    assert record.status == "refused"
    assert w.notifier.published[-1]["status"] == "refused"


def test_found_after_lost_restores_what_lost_changed() -> None:
    w = World()
    assert w.apply().status == "completed"
    outcome = w.apply(event(eventId="ev-2", type="found"))
    assert outcome.status == "completed"
    assert [s.kind for s in outcome.steps] == ["EnrollmentReenabled", "HubIdentityReenabled"]
    assert w.dps.enrollments["dev-1"].status is ProvisioningStatus.ENABLED
    assert w.registry.devices["dev-1"].status is HubDeviceStatus.ENABLED


def test_a_missing_hub_identity_counts_as_already_disabled() -> None:
    w = World()
    del w.registry.devices["dev-1"]
    outcome = w.apply()
    assert outcome.status == "completed"
    assert outcome.steps[-1].outcome == "already_done"


def test_dry_run_plans_without_journaling_or_changing_anything() -> None:
    w = World()
    outcome = w.apply(dry_run=True)
    assert outcome.status == "dry_run"
    assert outcome.plan is not None
    assert len(outcome.plan.steps) == 2
    assert w.journal.get("ev-1") is None
    assert w.mutations() == 0
    assert w.notifier.published == []


def test_a_failing_notifier_does_not_undo_a_completed_event() -> None:
    w = World()
    w.notifier.fail_with = Permanent("broker down")
    outcome = w.apply()
    assert outcome.status == "completed"
    assert "outcome notification failed" in outcome.warnings
    record = w.journal.get("ev-1")
    assert record is not None
    assert record.status == "completed"


def test_removing_a_blocking_enrollment_never_deletes_the_devices_own_enrollment() -> None:
    w = World()
    step = Step(StepKind.BLOCKING_ENROLLMENT_REMOVED, "dev-1", "undo")
    plan = Plan("ev-1", "found", "dev-1", steps=(step,))
    outcome = w.apply(planner=fixed(plan))
    assert outcome.status == "failed"
    assert "dev-1" in w.dps.enrollments
