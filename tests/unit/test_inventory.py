"""The inventory reader: what it reads, how many round trips, the group cache, history from the journal."""

from __future__ import annotations

from typing import Any

from shared.adapters.journal_memory import InMemoryJournal
from shared.events import LifecycleEvent, parse_event
from shared.model import AttestationType, HubDeviceStatus, ProvisioningStatus
from shared.ports import StepRecord
from tests.fakes import FakeClock, FakeDeviceRegistries, FakeDeviceRegistry, FakeProvisioningService
from unprovision.inventory import HUB_NOT_CONFIGURED, GroupCache, event_key, read_snapshot

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


def test_history_lists_completed_events_with_the_steps_that_took_effect() -> None:
    dps, registries, _ = world()
    journal = InMemoryJournal()
    for eid, status in (("old-lost", "completed"), ("half-done", "in_progress")):
        journal.begin(eid, event_type="lost", target="DEV-1", source="t", correlation_id=eid, plan={
            "eventId": eid, "eventType": "lost", "target": "DEV-1", "steps": [{}, {}]})
        journal.record_step(eid, StepRecord(0, "BlockingEnrollmentCreated", "dev-1", "done"))
        journal.record_step(eid, StepRecord(1, "HubIdentityDisabled", "dev-1", "failed", error="x"))
        journal.finish(eid, status)
    snap = read_snapshot(event(), dps, registries, journal, group_cache=GroupCache())
    history = [(h.event_id, h.step_kinds) for h in snap.history]
    assert history == [("old-lost", ("BlockingEnrollmentCreated",))]


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


def test_event_key_reads_both_event_objects_and_wire_mappings() -> None:
    key = event_key(event(correlationId="corr-9"))
    assert (key.event_id, key.event_type, key.target, key.is_group, key.correlation_id) == (
        "ev-1", "lost", "dev-1", False, "corr-9")
    wire = event_key({"eventId": "e", "type": "retired", "enrollmentGroupId": "g", "source": "op"})
    assert (wire.target, wire.is_group, wire.correlation_id) == ("g", True, "e")
