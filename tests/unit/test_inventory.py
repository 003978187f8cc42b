"""The inventory reader: what it reads, how many round trips, the group cache, history from the journal."""

from __future__ import annotations

from typing import Any

from shared.adapters.journal_memory import InMemoryJournal
from shared.events import LifecycleEvent, parse_event
from shared.model import AttestationType, HubDeviceStatus, ProvisioningStatus
from shared.ports import StepRecord
from tests.fakes import FakeClock, FakeDeviceRegistries, FakeDeviceRegistry, FakeProvisioningService
from unprovision.engine.inventory import HUB_NOT_CONFIGURED, GroupCache, read_snapshot

HUB = "hub-a.example"


def event(**fields: Any) -> LifecycleEvent:
    body = {"eventId": "ev-1", "type": "lost", "registrationId": "dev-1",
            "occurredAt": "2025-01-31T12:00:00Z", "source": "tracker", **fields}
    return parse_event({k: v for k, v in body.items() if v is not None})


def world() -> tuple[FakeProvisioningService, FakeDeviceRegistries, FakeDeviceRegistry]:
    dps = FakeProvisioningService()
    dps.add_group("grp-1", attestation=AttestationType.SYMMETRIC_KEY)
    dps.add_registration("dev-1", HUB, group_id="grp-1")
    registry = FakeDeviceRegistry(HUB)
    registry.add_device("dev-1")
    return dps, FakeDeviceRegistries([registry]), registry


def test_a_device_snapshot_reads_registration_enrollment_groups_and_hub_identity_once_each() -> None:
    dps, registries, registry = world()
    dps.add_enrollment("dev-1", attestation=AttestationType.TPM)
    snap = read_snapshot(event(), dps, registries, InMemoryJournal(), group_cache=GroupCache())
    assert snap.registration is not None
    assert snap.registration.assigned_hub == HUB
    assert snap.enrollment is not None
    assert snap.enrollment.attestation is AttestationType.TPM
    assert [g.group_id for g in snap.groups] == ["grp-1"]
    assert snap.hub_device is not None
    assert snap.hub_device.status is HubDeviceStatus.ENABLED
    assert dict(dps.calls) == {"get_registration": 1, "get_enrollment": 1, "iter_groups": 1}
    assert dict(registry.calls) == {"get": 1}


def test_registration_ids_are_matched_case_insensitively() -> None:
    dps, registries, _ = world()
    snap = read_snapshot(event(registrationId="DEV-1"), dps, registries, InMemoryJournal(),
                         group_cache=GroupCache())
    assert snap.registration is not None
    assert snap.registration.registration_id == "dev-1"


def test_the_group_list_is_cached_for_its_ttl_then_read_again() -> None:
    dps, registries, _ = world()
    clock = FakeClock()
    cache = GroupCache(ttl=30.0, clock=clock)
    read_snapshot(event(), dps, registries, InMemoryJournal(), group_cache=cache)
    read_snapshot(event(eventId="ev-2"), dps, registries, InMemoryJournal(), group_cache=cache)
    assert dps.calls["iter_groups"] == 1
    clock.advance(30.0)
    read_snapshot(event(eventId="ev-3"), dps, registries, InMemoryJournal(), group_cache=cache)
    assert dps.calls["iter_groups"] == 2


def test_an_unconfigured_hub_leaves_the_hub_device_out_and_says_so() -> None:
    dps, registries, _ = world()
    dps.add_registration("dev-2", "elsewhere.example", group_id="grp-1")
    snap = read_snapshot(event(registrationId="dev-2"), dps, registries, InMemoryJournal(),
                         group_cache=GroupCache())
    assert snap.hub_device is None
    assert snap.extra == {HUB_NOT_CONFIGURED: "elsewhere.example"}


def test_a_device_that_never_registered_costs_no_hub_read() -> None:
    dps, registries, registry = world()
    snap = read_snapshot(event(registrationId="nobody"), dps, registries, InMemoryJournal(),
                         group_cache=GroupCache())
    assert snap.registration is None
    assert snap.enrollment is None
    assert snap.hub_device is None
    assert registry.calls["get"] == 0


def _two_step_plan(eid: str) -> dict[str, Any]:
    return {"eventId": eid, "eventType": "lost", "target": "DEV-1", "steps": [
        {"kind": "BlockingEnrollmentCreated", "target": "dev-1", "reason": "block"},
        {"kind": "HubIdentityDisabled", "target": "dev-1", "reason": "hub", "hub": HUB}]}


def test_history_lists_every_begun_event_with_its_status_and_the_steps_that_took_effect() -> None:
    # Not only completed events: a revocation that failed part-way or is still running has changed the
    # device (its DPS step is done), and a later ``found`` must see it (issue 11, item 3).
    dps, registries, _ = world()
    journal = InMemoryJournal()
    for eid, status in (("old-lost", "completed"), ("half-done", "in_progress"), ("part-failed", "failed")):
        journal.begin(eid, event_type="lost", target="DEV-1", source="t", correlation_id=eid,
                      plan=_two_step_plan(eid))
        journal.record_step(eid, StepRecord(0, "BlockingEnrollmentCreated", "dev-1", "done"))
        journal.record_step(eid, StepRecord(1, "HubIdentityDisabled", "dev-1", "failed", error="x"))
        journal.finish(eid, status)
    journal.begin("other", event_type="lost", target="dev-2", source="t", correlation_id="other",
                  plan=_two_step_plan("other"))
    snap = read_snapshot(event(), dps, registries, journal, group_cache=GroupCache())
    history = sorted((h.event_id, h.step_kinds, str(h.status)) for h in snap.history)
    assert history == [
        ("half-done", ("BlockingEnrollmentCreated",), "in_progress"),
        ("old-lost", ("BlockingEnrollmentCreated",), "completed"),
        ("part-failed", ("BlockingEnrollmentCreated",), "failed"),
    ]
    assert not any(h.forced for h in snap.history)


def test_history_keeps_the_first_successful_attempt_of_a_step() -> None:
    dps, registries, _ = world()
    journal = InMemoryJournal()
    journal.begin("ev-0", event_type="lost", target="dev-1", source="t", correlation_id="ev-0",
                  plan=_two_step_plan("ev-0"))
    journal.record_step("ev-0", StepRecord(0, "BlockingEnrollmentCreated", "dev-1", "done"))
    journal.record_step("ev-0", StepRecord(0, "BlockingEnrollmentCreated", "dev-1", "failed", error="dup"))
    journal.finish("ev-0", "failed")
    snap = read_snapshot(event(), dps, registries, journal, group_cache=GroupCache())
    assert [(h.event_id, h.step_kinds) for h in snap.history] == [("ev-0", ("BlockingEnrollmentCreated",))]


def test_a_group_event_reads_its_group_fresh_even_when_the_cached_list_is_stale() -> None:
    dps, registries, registry = world()
    dps.add_group("grp-2")
    cache = GroupCache(ttl=3600.0, clock=FakeClock())
    cache.groups(dps)  # warm, with grp-1 enabled
    dps.set_group_status("grp-1", ProvisioningStatus.DISABLED)
    group_event = event(registrationId=None, enrollmentGroupId="GRP-1", type="compromised")
    snap = read_snapshot(group_event, dps, registries, InMemoryJournal(), group_cache=cache)
    by_id = {g.group_id: g.status for g in snap.groups}
    assert by_id == {"grp-1": ProvisioningStatus.DISABLED, "grp-2": ProvisioningStatus.ENABLED}
    assert snap.registration is None
    assert registry.calls["get"] == 0
