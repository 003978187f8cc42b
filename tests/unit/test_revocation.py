"""The planner over hand-built snapshots: one case per row of the policy table, group scope, edge cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.events import parse_event
from shared.model import (
    AttestationType,
    CertificateInfo,
    EnrollmentGroup,
    HubDevice,
    HubDeviceStatus,
    IndividualEnrollment,
    InventorySnapshot,
    ProvisioningStatus,
    RegistrationState,
)
from shared.plan import Service, StepKind, plan_from_dict, plan_to_dict
from shared.policy import DEFAULT_POLICY, load_policy
from shared.revocation import plan_revocation
from tests.support.certs import make_ca, make_intermediate, make_leaf

K = StepKind
ENABLED, DISABLED = ProvisioningStatus.ENABLED, ProvisioningStatus.DISABLED
HUB = "hub-eu.azure-devices.net"
ROOT = make_ca("Plan Root")
INTER = make_intermediate("Plan Inter", ROOT)
LEAF = make_leaf("dev-x509", INTER)
OTHER_ROOT = make_ca("Unrelated Root")


def group(gid: str, cert, status=ENABLED, attestation=AttestationType.X509) -> EnrollmentGroup:
    certs = (CertificateInfo("", "", pem=cert.pem),) if cert is not None else ()
    return EnrollmentGroup(gid, attestation, status, certs)


ROOT_G, INTER_G = group("root-g", ROOT), group("inter-g", INTER)
SYM_G = group("sym-g", None, attestation=AttestationType.SYMMETRIC_KEY)


def reg(rid: str = "dev-1", via: str | None = None, hub: str | None = HUB) -> RegistrationState:
    return RegistrationState(rid, rid, hub, "assigned", enrollment_group_id=via)


def own(rid: str, attestation: AttestationType, status=ENABLED, cert=None) -> IndividualEnrollment:
    info = CertificateInfo("", "", pem=cert.pem) if cert is not None else None
    return IndividualEnrollment(rid, attestation, status, client_certificate=info)


def hubdev(did: str = "dev-1", hub: str = HUB) -> HubDevice:
    return HubDevice(hub, did, HubDeviceStatus.ENABLED)


def event(event_type: str = "lost", target: str = "dev-1", **extra: Any):
    key = "enrollmentGroupId" if extra.pop("group", False) else "registrationId"
    return parse_event(
        {
            "eventId": "evt-9",
            "type": event_type,
            key: target,
            "occurredAt": "2025-06-01T09:30:00Z",
            "source": "tests",
            **extra,
        }
    )


@dataclass(frozen=True)
class Case:
    name: str
    event: Any
    snapshot: InventorySnapshot
    kinds: tuple[StepKind, ...]
    warns: tuple[str, ...] = ()  # substrings expected among the warnings
    policy: Any = DEFAULT_POLICY
    params: dict[str, str] = field(default_factory=dict)  # expected params of the first step


def device(rid: str, enrollment: IndividualEnrollment | None, groups=(), via=None) -> InventorySnapshot:
    return InventorySnapshot(
        registration=reg(rid, via), enrollment=enrollment, groups=tuple(groups), hub_device=hubdev(rid)
    )


CASES = [
    Case(
        "tpm individual lost: disable both",
        event("lost"),
        device("dev-1", own("dev-1", AttestationType.TPM)),
        (K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DISABLED),
    ),
    Case(
        "tpm individual retired: delete both",
        event("retired"),
        device("dev-1", own("dev-1", AttestationType.TPM)),
        (K.ENROLLMENT_DELETED, K.HUB_IDENTITY_DELETED),
    ),
    Case(
        "symmetric individual stolen: disable (temporary)",
        event("stolen"),
        device("dev-1", own("dev-1", AttestationType.SYMMETRIC_KEY)),
        (K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DISABLED),
    ),
    Case(
        "symmetric individual sold: delete (permanent), symmetric group present",
        event("sold"),
        device("dev-1", own("dev-1", AttestationType.SYMMETRIC_KEY), [SYM_G]),
        (K.ENROLLMENT_DELETED, K.HUB_IDENTITY_DELETED),
    ),
    Case(
        "x509 individual sold, no group: delete",
        event("sold", "dev-x509"),
        device("dev-x509", own("dev-x509", AttestationType.X509, cert=LEAF)),
        (K.ENROLLMENT_DELETED, K.HUB_IDENTITY_DELETED),
    ),
    Case(
        "x509 individual sold, unrelated group: delete",
        event("sold", "dev-x509"),
        device("dev-x509", own("dev-x509", AttestationType.X509, cert=LEAF), [group("o", OTHER_ROOT)]),
        (K.ENROLLMENT_DELETED, K.HUB_IDENTITY_DELETED),
    ),
    Case(
        "x509 individual moved, enabled group covers chain: downgraded to disable",
        event("moved", "dev-x509"),
        device("dev-x509", own("dev-x509", AttestationType.X509, cert=LEAF), [ROOT_G, INTER_G]),
        (K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DELETED),
        ("disabled instead",),
    ),
    Case(
        "x509 individual retired, nearest group disabled but root enabled: disable",
        event("retired", "dev-x509"),
        device(
            "dev-x509",
            own("dev-x509", AttestationType.X509, cert=LEAF),
            [ROOT_G, group("i", INTER, DISABLED)],
        ),
        (K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DELETED),
        ("root-g",),
    ),
    Case(
        "x509 individual sold, leaf unknown, enabled x509 group: disable",
        event("sold", "dev-x509"),
        device("dev-x509", own("dev-x509", AttestationType.X509), [ROOT_G]),
        (K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DELETED),
        ("leaf certificate unknown",),
    ),
    Case(
        "x509 individual sold, leaf from the event: disable",
        event("sold", "dev-x509", certificate=LEAF.pem),
        device("dev-x509", own("dev-x509", AttestationType.X509), [INTER_G]),
        (K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DELETED),
        ("inter-g",),
    ),
    Case(
        "x509 group member with leaf: x509 blocking enrollment",
        event("lost", "dev-x509", certificate=LEAF.pem),
        device("dev-x509", None, [ROOT_G, INTER_G], via="inter-g"),
        (K.BLOCKING_ENROLLMENT_CREATED, K.HUB_IDENTITY_DISABLED),
        params={"marker": "evt-9", "attestation": "x509", "certificate": LEAF.pem},
    ),
    Case(
        "x509 group member without leaf: symmetric-key blocking enrollment",
        event("stolen", "dev-x509"),
        device("dev-x509", None, [ROOT_G, INTER_G], via="inter-g"),
        (K.BLOCKING_ENROLLMENT_CREATED, K.HUB_IDENTITY_DISABLED),
        params={"marker": "evt-9", "attestation": "symmetricKey"},
    ),
    Case(
        "symmetric group member sold: blocking enrollment, hub deleted",
        event("sold", "dev-s"),
        device("dev-s", None, [SYM_G], via="sym-g"),
        (K.BLOCKING_ENROLLMENT_CREATED, K.HUB_IDENTITY_DELETED),
        params={"marker": "evt-9", "attestation": "symmetricKey"},
    ),
    Case(
        "already disabled enrollment: step still planned",
        event("lost"),
        device("dev-1", own("dev-1", AttestationType.TPM, DISABLED)),
        (K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DISABLED),
    ),
    Case(
        "already blocked member: blocking step planned again, never removed",
        event("sold", "dev-s"),
        device(
            "dev-s",
            IndividualEnrollment("dev-s", AttestationType.SYMMETRIC_KEY, DISABLED, blocking_marker="evt-1"),
            [SYM_G],
        ),
        (K.BLOCKING_ENROLLMENT_CREATED, K.HUB_IDENTITY_DELETED),
        ("already blocked by event evt-1",),
    ),
    Case(
        "policy override: sold keeps the hub identity, disabled",
        event("sold"),
        device("dev-1", own("dev-1", AttestationType.TPM)),
        (K.ENROLLMENT_DELETED, K.HUB_IDENTITY_DISABLED),
        policy=load_policy({"sold": {"hub": "disable"}}),
    ),
    Case(
        "policy override: hub none",
        event("lost"),
        device("dev-1", own("dev-1", AttestationType.TPM)),
        (K.ENROLLMENT_DISABLED,),
        ("policy leaves",),
        policy=load_policy({"lost": {"hub": "none"}}),
    ),
    Case(
        "hub taken from the hub device when the registration has none",
        event("lost"),
        InventorySnapshot(
            registration=reg(hub=None), enrollment=own("dev-1", AttestationType.TPM), hub_device=hubdev()
        ),
        (K.ENROLLMENT_DISABLED, K.HUB_IDENTITY_DISABLED),
    ),
    Case(
        "no hub known: DPS only, with a warning",
        event("lost"),
        InventorySnapshot(registration=reg(hub=None), enrollment=own("dev-1", AttestationType.TPM)),
        (K.ENROLLMENT_DISABLED,),
        ("no hub known",),
    ),
    Case(
        "hub identity only (no DPS record)",
        event("lost"),
        InventorySnapshot(hub_device=hubdev()),
        (K.HUB_IDENTITY_DISABLED,),
        ("no DPS registration",),
    ),
    Case(
        "never registered, certificate covered by an enabled group: pre-emptive block",
        event("stolen", "dev-x509", certificate=LEAF.pem),
        InventorySnapshot(groups=(ROOT_G, INTER_G)),
        (K.BLOCKING_ENROLLMENT_CREATED,),
        ("has not registered yet",),
    ),
    Case(
        "group compromised: disable group then its devices",
        event("compromised", "root-g", group=True),
        InventorySnapshot(groups=(ROOT_G,)),
        (K.GROUP_DISABLED, K.GROUP_DEVICES_DISABLED),
    ),
    Case(
        "root group compromised while an intermediate group stays enabled: warned",
        event("compromised", "root-g", group=True),
        InventorySnapshot(groups=(ROOT_G, INTER_G)),
        (K.GROUP_DISABLED, K.GROUP_DEVICES_DISABLED),
        ("inter-g sit below root-g",),
    ),
    Case(
        "group retired without deleteGroup: disabled, devices deleted",
        event("retired", "inter-g", group=True),
        InventorySnapshot(groups=(ROOT_G, INTER_G)),
        (K.GROUP_DISABLED, K.GROUP_DEVICES_DELETED),
    ),
    Case(
        "group retired + deleteGroup, enabled parent: kept disabled",
        event("retired", "INTER-G", group=True, deleteGroup=True),
        InventorySnapshot(groups=(ROOT_G, INTER_G)),
        (K.GROUP_DISABLED, K.GROUP_DEVICES_DELETED),
        ("kept disabled, not deleted", "root-g"),
    ),
    Case(
        "group retired + deleteGroup, parent disabled: deleted",
        event("retired", "inter-g", group=True, deleteGroup=True),
        InventorySnapshot(groups=(group("root-g", ROOT, DISABLED), INTER_G)),
        (K.GROUP_DISABLED, K.GROUP_DELETED, K.GROUP_DEVICES_DELETED),
    ),
    Case(
        "symmetric group retired + deleteGroup: deleted",
        event("retired", "sym-g", group=True, deleteGroup=True),
        InventorySnapshot(groups=(SYM_G, ROOT_G)),
        (K.GROUP_DISABLED, K.GROUP_DELETED, K.GROUP_DEVICES_DELETED),
    ),
    Case(
        "ca-references group retired + deleteGroup with another enabled x509 group: kept",
        event("retired", "ca-g", group=True, deleteGroup=True),
        InventorySnapshot(
            groups=(group("ca-g", None, attestation=AttestationType.X509_CA_REFERENCES), ROOT_G)
        ),
        (K.GROUP_DISABLED, K.GROUP_DEVICES_DELETED),
        ("cannot be analysed",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan(case: Case):
    plan = plan_revocation(case.event, case.policy, case.snapshot)
    assert plan.refusal is None
    assert tuple(s.kind for s in plan.steps) == case.kinds
    for expected in case.warns:
        assert any(expected in w for w in plan.warnings), plan.warnings
    for key, value in case.params.items():
        assert plan.steps[0].params[key] == value
    assert all(s.reason for s in plan.steps)
    hub_steps = [s for s in plan.steps if s.service is Service.HUB and not s.kind.name.startswith("GROUP")]
    assert all(s.hub == HUB for s in hub_steps)


REFUSALS = [
    ("unknown device", event("lost", "ghost"), InventorySnapshot(groups=(ROOT_G,)), "unknown device"),
    (
        "unknown device, certificate but no covering group",
        event("lost", "dev-x509", certificate=LEAF.pem),
        InventorySnapshot(groups=(group("o", OTHER_ROOT),)),
        "no enabled group covers",
    ),
    (
        "lost on a whole group",
        event("lost", "root-g", group=True),
        InventorySnapshot(groups=(ROOT_G,)),
        "cannot apply to a whole group",
    ),
    (
        "group not found",
        event("compromised", "nope", group=True),
        InventorySnapshot(groups=(ROOT_G,)),
        "not found",
    ),
]


@pytest.mark.parametrize(("name", "ev", "snap", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(name, ev, snap, message):
    plan = plan_revocation(ev, DEFAULT_POLICY, snap)
    assert plan.refused
    assert message in plan.refusal
    assert plan.steps == ()


def test_hub_step_carries_the_note_as_status_reason():
    plan = plan_revocation(
        event("stolen", note="taken from van 7"),
        DEFAULT_POLICY,
        device("dev-1", own("dev-1", AttestationType.TPM)),
    )
    assert plan.steps[-1].params == {"statusReason": "taken from van 7"}


def test_default_status_reason_fits_the_hub_limit():
    long_id = "e" * 128
    ev = parse_event(
        {
            "eventId": long_id,
            "type": "lost",
            "registrationId": "dev-1",
            "occurredAt": "2025-06-01T09:30:00Z",
            "source": "t",
        }
    )
    plan = plan_revocation(ev, DEFAULT_POLICY, device("dev-1", own("dev-1", AttestationType.TPM)))
    assert len(plan.steps[-1].params["statusReason"]) == 128


def test_a_certificate_of_another_device_is_refused_and_blocks_nobody():
    # lost for "other-name" carrying dev-x509's certificate: blocking dev-x509 would lock out an innocent
    # device and leave "other-name" enrolled (issue #11, item 6).
    snap = InventorySnapshot(registration=reg("other-name", via="inter-g"), groups=(INTER_G,),
                             hub_device=hubdev("other-name"))
    plan = plan_revocation(event("lost", "other-name", certificate=LEAF.pem), DEFAULT_POLICY, snap)
    assert plan.refused
    assert plan.steps == ()
    assert "'dev-x509'" in (plan.refusal or "")
    assert "'other-name'" in (plan.refusal or "")


def test_a_certificate_of_another_unregistered_device_is_refused_too():
    plan = plan_revocation(event("stolen", "other-name", certificate=LEAF.pem), DEFAULT_POLICY,
                           InventorySnapshot(groups=(INTER_G,)))
    assert plan.refused
    assert "CN 'dev-x509'" in (plan.refusal or "")


def test_the_devices_own_certificate_blocks_it_by_its_cn_whatever_the_case():
    snap = InventorySnapshot(registration=reg("DEV-X509", via="inter-g"), groups=(INTER_G,))
    plan = plan_revocation(event("lost", "DEV-X509", certificate=LEAF.pem), DEFAULT_POLICY, snap)
    block = plan.steps[0]
    assert (block.kind, block.target, block.params["attestation"]) == (
        K.BLOCKING_ENROLLMENT_CREATED, "DEV-X509", "x509")


def test_event_device_id_differing_from_the_assigned_one_is_warned():
    plan = plan_revocation(
        event("lost", deviceId="someone-else"),
        DEFAULT_POLICY,
        device("dev-1", own("dev-1", AttestationType.TPM)),
    )
    assert plan.steps[-1].target == "dev-1"
    assert any("someone-else" in w for w in plan.warnings)


def test_plan_round_trips_through_its_dict_form():
    plan = plan_revocation(
        event("lost", "dev-x509", certificate=LEAF.pem),
        DEFAULT_POLICY,
        device("dev-x509", None, [INTER_G], via="inter-g"),
    )
    assert plan_from_dict(plan_to_dict(plan)) == plan
