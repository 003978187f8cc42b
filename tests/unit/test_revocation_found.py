"""``found`` undoes the last ``lost`` from the journal's history, and refuses what it must not undo."""

from __future__ import annotations

import pytest

from shared.events import parse_event
from shared.model import (
    AttestationType,
    HubDevice,
    HubDeviceStatus,
    IndividualEnrollment,
    InventorySnapshot,
    PastRevocation,
    ProvisioningStatus,
    RegistrationState,
)
from shared.plan import StepKind as K
from shared.policy import DEFAULT_POLICY
from shared.revocation import plan_revocation
from shared.revocation_found import LIFTS_PARAM, lifts_one_way

HUB = "hub-us.azure-devices.net"
DISABLED = ProvisioningStatus.DISABLED


def found(force: bool = False):
    body = {
        "eventId": "evt-found",
        "type": "found",
        "registrationId": "dev-1",
        "occurredAt": "2025-06-02T10:00:00Z",
        "source": "operator",
    }
    return parse_event({**body, "force": True} if force else body)


def past(event_id: str, event_type: str, *kinds: K) -> PastRevocation:
    return PastRevocation(event_id, event_type, tuple(k.value for k in kinds))


def snapshot(history, *, blocking_marker: str | None = None, enrollment: bool = True) -> InventorySnapshot:
    enr = None
    if enrollment:
        attestation = AttestationType.SYMMETRIC_KEY if blocking_marker else AttestationType.TPM
        enr = IndividualEnrollment("dev-1", attestation, DISABLED, blocking_marker=blocking_marker)
    return InventorySnapshot(
        registration=RegistrationState("dev-1", "dev-1", HUB, "assigned"),
        enrollment=enr,
        hub_device=HubDevice(HUB, "dev-1", HubDeviceStatus.DISABLED),
        history=tuple(history),
    )


LOST_OWN = past("evt-lost", "lost", K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DISABLED)
LOST_MEMBER = past("evt-lost", "lost", K.BLOCKING_ENROLLMENT_CREATED, K.HUB_IDENTITY_DISABLED)
STOLEN_MEMBER = past("evt-stolen", "stolen", K.BLOCKING_ENROLLMENT_CREATED, K.HUB_IDENTITY_DISABLED)


def test_found_after_lost_reenables_enrollment_then_hub_identity():
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot([LOST_OWN]))
    assert [s.kind for s in plan.steps] == [K.ENROLLMENT_REENABLED, K.HUB_IDENTITY_REENABLED]
    assert plan.steps[1].hub == HUB
    assert "evt-lost" in plan.steps[0].reason


def test_found_after_lost_of_a_group_member_removes_its_blocking_enrollment():
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot([LOST_MEMBER], blocking_marker="evt-lost"))
    assert [s.kind for s in plan.steps] == [K.BLOCKING_ENROLLMENT_REMOVED, K.HUB_IDENTITY_REENABLED]
    assert plan.steps[0].params["marker"] == "evt-lost"


def test_found_never_removes_the_device_own_enrollment_as_if_blocking():
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot([LOST_MEMBER]))
    assert [s.kind for s in plan.steps] == [K.HUB_IDENTITY_REENABLED]
    assert any("no blocking enrollment" in w for w in plan.warnings)


@pytest.mark.parametrize("event_type", ["stolen", "compromised"])
def test_found_after_stolen_or_compromised_is_refused_without_force(event_type):
    history = [past("evt-x", event_type, K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DISABLED)]
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot(history))
    assert plan.refused
    assert "force" in plan.refusal
    assert event_type in plan.refusal


def test_found_after_stolen_with_force_restores():
    plan = plan_revocation(
        found(force=True), DEFAULT_POLICY, snapshot([STOLEN_MEMBER], blocking_marker="evt-stolen")
    )
    assert [s.kind for s in plan.steps] == [K.BLOCKING_ENROLLMENT_REMOVED, K.HUB_IDENTITY_REENABLED]


def test_block_from_an_earlier_theft_is_not_lifted_by_undoing_a_later_lost():
    history = [LOST_MEMBER, STOLEN_MEMBER]  # newest first: the lost's block was already there (already_done)
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot(history, blocking_marker="evt-stolen"))
    assert plan.refused
    assert "stolen (event evt-stolen)" in plan.refusal


def test_block_created_by_an_unknown_event_is_left_in_place():
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot([LOST_MEMBER], blocking_marker="evt-elsewhere"))
    assert [s.kind for s in plan.steps] == [K.HUB_IDENTITY_REENABLED]
    assert any("left in place" in w for w in plan.warnings)


@pytest.mark.parametrize("event_type", ["sold", "moved", "retired"])
def test_found_after_a_deleting_revocation_is_refused_with_an_explanation(event_type):
    history = [past("evt-del", event_type, K.ENROLLMENT_DELETED, K.HUB_IDENTITY_DELETED)]
    plan = plan_revocation(found(force=True), DEFAULT_POLICY, snapshot(history, enrollment=False))
    assert plan.refused
    assert "re-provision" in plan.refusal


def test_found_with_no_history_is_refused():
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot([]))
    assert plan.refused
    assert "nothing to undo" in plan.refusal


def test_found_after_found_is_refused():
    history = [past("evt-f", "found", K.ENROLLMENT_REENABLED), LOST_OWN]
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot(history))
    assert plan.refused
    assert "already undone" in plan.refusal


def test_found_when_the_disabled_enrollment_is_gone_is_refused_if_nothing_is_left():
    history = [past("evt-lost", "lost", K.ENROLLMENT_DISABLED)]
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot(history, enrollment=False))
    assert plan.refused
    assert any("no longer exists" in w for w in plan.warnings)


STOLEN_OWN = past("evt-stolen", "stolen", K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DISABLED)
REFUSED_FOUND = PastRevocation("evt-found-1", "found", (), status="refused")
LOST_NOTHING = past("evt-lost-2", "lost")  # every step already_done: nothing applied


def test_an_unforced_found_after_stolen_then_lost_is_refused():
    # issue #11 item 2: stolen, found (refused), lost (already_done), found -> must stay refused.
    history = [LOST_NOTHING, REFUSED_FOUND, STOLEN_OWN]
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot(history))
    assert plan.refused
    assert "force=true" in (plan.refusal or "")


def test_an_unforced_found_after_a_theft_still_in_progress_is_refused():
    history = [LOST_OWN, PastRevocation("evt-stolen", "stolen", (K.ENROLLMENT_DISABLED.value,),
                                        status="in_progress")]
    assert plan_revocation(found(), DEFAULT_POLICY, snapshot(history)).refused


def test_a_refused_theft_is_not_one_way():
    history = [LOST_OWN, PastRevocation("evt-stolen", "stolen", (), status="refused")]
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot(history))
    assert [s.kind for s in plan.steps] == [K.ENROLLMENT_REENABLED, K.HUB_IDENTITY_REENABLED]


def test_a_forced_found_undoes_everything_since_the_theft_and_names_it():
    history = [LOST_NOTHING, REFUSED_FOUND, STOLEN_OWN]
    plan = plan_revocation(found(force=True), DEFAULT_POLICY, snapshot(history))
    assert [s.kind for s in plan.steps] == [K.ENROLLMENT_REENABLED, K.HUB_IDENTITY_REENABLED]
    assert {s.params[LIFTS_PARAM] for s in plan.steps} == {"evt-stolen"}
    assert lifts_one_way(plan)


def test_after_a_completed_forced_found_a_later_lost_is_undone_without_force():
    lifted = PastRevocation("evt-f", "found", (K.ENROLLMENT_REENABLED.value,), forced=True)
    history = [LOST_OWN, lifted, STOLEN_OWN]
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot(history))
    assert not plan.refused
    assert not lifts_one_way(plan)


def test_a_forced_found_lifts_a_block_this_app_placed_under_another_devices_event():
    # issue #11 item 6: the device has no history of its own, only a blocking enrollment with our marker.
    plan = plan_revocation(found(force=True), DEFAULT_POLICY, snapshot([], blocking_marker="evt-other"))
    assert [s.kind for s in plan.steps] == [K.BLOCKING_ENROLLMENT_REMOVED]
    assert plan.steps[0].params["marker"] == "evt-other"


def test_an_unforced_found_leaves_a_foreign_block_alone():
    plan = plan_revocation(found(), DEFAULT_POLICY, snapshot([], blocking_marker="evt-other"))
    assert plan.refused
