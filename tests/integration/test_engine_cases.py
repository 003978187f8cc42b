"""The engine end to end: every planner case applied by ``Engine.apply`` through the real SDK adapters
against the emulator, journaled in Azurite, and then checked from the device's side.

"Revoked" is asserted the way it matters: the device's next registration attempt at the DPS device endpoint
is refused and its device-to-cloud call is rejected, while its siblings still register and send.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.journal_tables import TableJournal
from shared.errors import Transient
from tests.integration import engine_fleet as fleet
from unprovision.outcomes import Outcome

pytestmark = pytest.mark.slow


def run(emu: Any, journal: TableJournal, evt: Any, **options: Any) -> Outcome:
    return fleet.engine(emu, journal).apply(evt, **options)


def kinds(outcome: Outcome) -> list[tuple[str, str]]:
    return [(s.kind, s.outcome) for s in outcome.steps]


def assert_cut_off(emu: Any, device: fleet.Device, hub: str) -> None:
    assert not fleet.can_register(emu, device), "revoked device still registers"
    assert not fleet.can_send(emu, device, hub), "revoked device still sends"


def assert_working(emu: Any, *devices: fleet.Device) -> None:
    for device in devices:
        assert fleet.can_register(emu, device), f"{device.registration_id} can no longer register"
        assert fleet.can_send(emu, device), f"{device.registration_id} can no longer send"


@pytest.mark.parametrize(("event_type", "expected"), [
    ("lost", [("EnrollmentDisabled", "done"), ("HubIdentityDisabled", "done")]),
    ("sold", [("EnrollmentDeleted", "done"), ("HubIdentityDeleted", "done")]),
])
def test_individual_enrollment_device_is_cut_off_and_its_neighbour_keeps_working(
        clean_emulator: Any, table_journal: TableJournal, event_type: str, expected: list[Any]) -> None:
    emu = clean_emulator
    device = fleet.individual_device(emu, "ind-1", hub=0)
    neighbour = fleet.individual_device(emu, "ind-2", hub=0)
    hub = fleet.assigned_hub(emu, "ind-1")
    outcome = run(emu, table_journal, fleet.event(f"e-{event_type}", event_type, reg_id="ind-1"))
    assert outcome.status == "completed", outcome.error
    assert kinds(outcome) == expected
    assert fleet.hub_status(emu, "ind-1", hub) == ("disabled" if event_type == "lost" else None)
    assert_cut_off(emu, device, hub)
    assert_working(emu, neighbour)


def test_symmetric_group_member_is_blocked_while_its_siblings_register_and_send(
        clean_emulator: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    devices = fleet.symmetric_group(emu, "grp-sym", ["sym-1", "sym-2", "sym-3"])
    hub = fleet.assigned_hub(emu, "sym-1")
    outcome = run(emu, table_journal, fleet.event("e-lost-sym", "lost", reg_id="sym-1"))
    assert outcome.status == "completed", outcome.error
    assert kinds(outcome) == [("BlockingEnrollmentCreated", "done"), ("HubIdentityDisabled", "done")]
    assert_cut_off(emu, devices[0], hub)
    assert_working(emu, *devices[1:])


def test_x509_group_member_reported_stolen_with_its_certificate_is_blocked_by_its_cn(
        clean_emulator: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    _root, devices = fleet.x509_group(emu, "grp-x509", ["cam-1", "cam-2"])
    hub = fleet.assigned_hub(emu, "cam-1")
    assert devices[0].leaf is not None
    evt = fleet.event("e-stolen-x", "stolen", reg_id="cam-1", certificate=devices[0].leaf.pem)
    outcome = run(emu, table_journal, evt)
    assert outcome.status == "completed", outcome.error
    assert kinds(outcome) == [("BlockingEnrollmentCreated", "done"), ("HubIdentityDisabled", "done")]
    assert_cut_off(emu, devices[0], hub)
    assert_working(emu, devices[1])


def test_found_after_lost_lets_the_device_register_and_send_again(
        clean_emulator: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    devices = fleet.symmetric_group(emu, "grp-found", ["f-1", "f-2"])
    hub = fleet.assigned_hub(emu, "f-1")
    assert run(emu, table_journal, fleet.event("e-lost-f", "lost", reg_id="f-1")).status == "completed"
    assert_cut_off(emu, devices[0], hub)
    outcome = run(emu, table_journal, fleet.event("e-found-f", "found", reg_id="f-1"))
    assert outcome.status == "completed", outcome.error
    assert kinds(outcome) == [("BlockingEnrollmentRemoved", "done"), ("HubIdentityReenabled", "done")]
    assert_working(emu, *devices)


def test_compromised_group_disables_every_member_in_its_own_hub_and_spares_other_groups(
        clean_emulator: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    members = fleet.symmetric_group(emu, "grp-bad", [f"bad-{i}" for i in range(8)])
    others = fleet.symmetric_group(emu, "grp-good", ["good-1", "good-2"])
    hubs = {d.registration_id: fleet.assigned_hub(emu, d.registration_id) for d in members}
    assert len(set(hubs.values())) == 2, "the hashed group should span both hubs"
    outcome = run(emu, table_journal, fleet.event("e-comp", "compromised", group_id="grp-bad"))
    assert outcome.status == "completed", outcome.error
    assert kinds(outcome) == [("GroupDisabled", "done"), ("GroupDevicesDisabled", "done")]
    for device in members:
        assert fleet.hub_status(emu, device.registration_id, hubs[device.registration_id]) == "disabled"
        assert_cut_off(emu, device, hubs[device.registration_id])
    assert_working(emu, *others)


def test_retired_group_with_delete_group_removes_the_group_and_its_identities(
        clean_emulator: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    members = fleet.symmetric_group(emu, "grp-old", [f"old-{i}" for i in range(4)])
    others = fleet.symmetric_group(emu, "grp-new", ["new-1"])
    hubs = {d.registration_id: fleet.assigned_hub(emu, d.registration_id) for d in members}
    outcome = run(emu, table_journal, fleet.event("e-ret", "retired", group_id="grp-old", deleteGroup=True))
    assert outcome.status == "completed", outcome.error
    assert kinds(outcome) == [("GroupDisabled", "done"), ("GroupDeleted", "done"),
                              ("GroupDevicesDeleted", "done")]
    assert fleet.engine_ports(emu)[0].get_group("grp-old") is None
    for device in members:
        assert fleet.hub_status(emu, device.registration_id, hubs[device.registration_id]) is None
        assert_cut_off(emu, device, hubs[device.registration_id])
    assert_working(emu, *others)


def test_unknown_device_without_certificate_is_refused_and_nothing_changes(
        clean_emulator: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    fleet.symmetric_group(emu, "grp-x", ["x-1"])
    before = fleet.mutating_calls(emu)
    outcome = run(emu, table_journal, fleet.event("e-nobody", "lost", reg_id="nobody-here"))
    assert outcome.status == "refused"
    assert fleet.mutating_calls(emu) == before
    record = table_journal.get("e-nobody")
    assert record is not None
    assert record.status == "refused"
    assert record.steps == ()


@pytest.mark.parametrize("scope", ["device", "group"])
def test_the_same_event_applied_twice_changes_nothing_more(
        clean_emulator: Any, table_journal: TableJournal, scope: str) -> None:
    emu = clean_emulator
    fleet.symmetric_group(emu, "grp-twice", ["tw-1", "tw-2", "tw-3"])
    evt = (fleet.event("e-twice", "lost", reg_id="tw-1") if scope == "device"
           else fleet.event("e-twice", "compromised", group_id="grp-twice"))
    first = run(emu, table_journal, evt)
    assert first.status == "completed", first.error
    writes = fleet.mutating_calls(emu)
    second = run(emu, table_journal, evt)
    assert second.status == "completed"
    assert kinds(second) == kinds(first)
    assert fleet.mutating_calls(emu) == writes, "the second application wrote to DPS or a hub"
    record = table_journal.get("e-twice")
    assert record is not None
    assert sorted(s.index for s in record.steps) == list(range(len(first.steps)))  # one record per step
    history = list(table_journal.history(evt.target))
    assert [r.event_id for r in history] == ["e-twice"]


def test_a_hub_outage_in_the_middle_of_a_group_plan_is_recorded_and_a_rerun_completes_it(
        clean_emulator: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    members = fleet.symmetric_group(emu, "grp-flaky", [f"fl-{i}" for i in range(6)])
    hub_names = [h["name"] for h in emu.hubs]
    emu.admin("PUT", "/faults", json={"rate5xx": 1.0, "status5xx": 503, "services": hub_names,
                                      "methods": ["POST"], "paths": ["^/devices/?$"]})
    evt = fleet.event("e-flaky", "compromised", group_id="grp-flaky")
    with pytest.raises(Transient):
        fleet.engine(emu, table_journal, retrier=fleet.fast_retrier(attempts=2)).apply(evt)
    record = table_journal.get("e-flaky")
    assert record is not None
    assert record.status not in ("completed", "failed")
    latest = {s.index: s for s in record.steps}
    assert (latest[0].kind, latest[0].outcome) == ("GroupDisabled", "done")
    assert latest[1].outcome == "failed"
    assert "transient" in (latest[1].error or "")
    dps_writes = _dps_writes(emu)
    emu.admin("PUT", "/faults", json={})
    outcome = run(emu, table_journal, evt)
    assert outcome.status == "completed", outcome.error
    assert _dps_writes(emu) == dps_writes, "the DPS step ran again on the re-run"
    for device in members:
        hub = fleet.assigned_hub(emu, device.registration_id)
        assert fleet.hub_status(emu, device.registration_id, hub) == "disabled"


def _dps_writes(emu: Any) -> int:
    operations = fleet.counters(emu).get("dps", {})
    return sum(sum(v.values()) for op, v in operations.items() if op.split(" ")[0] in ("PUT", "DELETE")
               and "/register" not in op)
