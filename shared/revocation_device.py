"""Revocation of one device (every type but ``found``): its own enrollment, or a blocking enrollment when it
came in through a group, then its hub identity.

Called by ``shared.revocation.plan_revocation``; pure like the rest of the planner (no I/O, no clock).

Decisions not pinned by a documented source (docs/planner.md):
* Idempotent planning: a step whose effect the snapshot already shows is still planned; the engine reports it
  ``already_done``. A missing hub identity likewise still gets its hub step, with a warning.
* A device that never registered but whose certificate (sent in the event) is covered by a group that may
  admit it gets a blocking enrollment pre-emptively, so that it can never register; without a certificate
  such an event is refused (there is nothing known to revoke).
* A certificate whose subject CN is not the event's registration ID is refused: DPS keys an X.509 enrollment
  on the leaf CN, so acting on it would block another (innocent) device and leave the named one untouched.
"""

from __future__ import annotations

from shared.certs import ParsedCert, device_coverage
from shared.ids import same_dps_id
from shared.model import AttestationType, InventorySnapshot, ProvisioningStatus
from shared.plan import Plan, Step, StepKind
from shared.policy import EnrollmentAction, HubAction, Policy
from shared.revocation_draft import Draft, group_names, resolve_hub, status_reason

_HUB_KIND = {
    HubAction.DISABLE: StepKind.HUB_IDENTITY_DISABLED,
    HubAction.DELETE: StepKind.HUB_IDENTITY_DELETED,
}


def certificate_mismatch(registration_id: str, chain: tuple[ParsedCert, ...]) -> str | None:
    """Why the event's certificate cannot be this device's (None when it can, or when there is none)."""
    if not chain:
        return None
    cn = chain[0].common_name
    if cn is not None and same_dps_id(cn, registration_id):
        return None
    named = f"subject CN {cn!r}" if cn is not None else "no subject CN"
    return (
        f"the event's certificate has {named}, but registrationId is {registration_id!r}: DPS identifies an "
        "X.509 device by its leaf CN, so this certificate is another device's; send the device's own "
        "certificate, or none to act by registration ID"
    )


def plan_device(draft: Draft, policy: Policy, snap: InventorySnapshot) -> Plan:
    """Revoke one device: its DPS access (own or blocking enrollment) first, then its hub identity."""
    event = draft.event
    mismatch = certificate_mismatch(event.target, event.certificate_chain())
    if mismatch:
        return draft.refuse(mismatch)
    rule = policy.rule(event.type)
    reg, enr, chain = snap.registration, snap.enrollment, event.certificate_chain()
    if reg is None and enr is None and snap.hub_device is None:
        return _plan_unregistered(draft, snap, chain)
    if enr is not None and not enr.is_blocking:
        action = rule.enrollment
        if (
            action is EnrollmentAction.DELETE
            and enr.attestation is AttestationType.X509
            and _may_fall_back(draft, snap, chain)
        ):
            action = EnrollmentAction.DISABLE
        kind = (
            StepKind.ENROLLMENT_DELETED if action is EnrollmentAction.DELETE else StepKind.ENROLLMENT_DISABLED
        )
        draft.steps.append(Step(kind, enr.registration_id, _enrollment_reason(enr.attestation.value, action)))
    elif enr is not None:
        draft.warn(f"{enr.registration_id} is already blocked by event {enr.blocking_marker}; kept as it is")
        group = reg.enrollment_group_id if reg is not None else None
        draft.steps.append(_blocking_step(draft, enr.registration_id, chain, group))
    elif reg is not None:
        draft.steps.append(_blocking_step(draft, reg.registration_id, chain, reg.enrollment_group_id))
    elif chain and device_coverage(chain, snap.groups).may_admit:
        draft.steps.append(_blocking_step(draft, event.target, chain, None))
    else:
        draft.warn(f"no DPS registration or enrollment for {event.target}: only the hub identity is changed")
    _add_hub_step(draft, rule.hub, snap)
    return draft.plan()


def _plan_unregistered(draft: Draft, snap: InventorySnapshot, chain: tuple[ParsedCert, ...]) -> Plan:
    event = draft.event
    unknown = f"unknown device: no registration, enrollment or hub identity for {event.target}"
    if not chain:
        return draft.refuse(
            f"{unknown}; nothing to revoke (send its certificate to block a device not yet "
            "registered through an X.509 group)"
        )
    coverage = device_coverage(chain, snap.groups)
    draft.warn(*coverage.warnings)
    if not coverage.may_admit:
        return draft.refuse(f"{unknown}, and no enabled group covers its certificate")
    draft.warn(f"{event.target} has not registered yet: blocked pre-emptively so it never can; no hub step")
    draft.steps.append(_blocking_step(draft, event.target, chain, group_names(coverage.enabled)))
    return draft.plan()


def _may_fall_back(draft: Draft, snap: InventorySnapshot, chain: tuple[ParsedCert, ...]) -> bool:
    """Would deleting this X.509 enrollment let the device re-enroll through a group? (conservative)"""
    leaf = chain or (snap.enrollment.client_certificate if snap.enrollment else None)
    if leaf is None:
        risky = [
            g
            for g in snap.groups
            if g.status is ProvisioningStatus.ENABLED
            and g.attestation in (AttestationType.X509, AttestationType.X509_CA_REFERENCES)
        ]
        if risky:
            draft.warn(
                f"leaf certificate unknown, enabled X.509 group(s) {group_names(risky)} may cover it: "
                "enrollment disabled instead of deleted"
            )
        return bool(risky)
    coverage = device_coverage(leaf, snap.groups)
    draft.warn(*coverage.warnings)
    if coverage.may_admit:
        names = group_names(coverage.enabled + coverage.uncertain)
        draft.warn(
            f"enabled group(s) {names} cover the device's chain: deleting its enrollment would let it "
            "re-enroll, so it is disabled instead"
        )
    return coverage.may_admit


def _enrollment_reason(attestation: str, action: EnrollmentAction) -> str:
    if action is EnrollmentAction.DELETE:
        return f"device has its own {attestation} individual enrollment; permanent revocation deletes it"
    return (
        f"device has its own {attestation} individual enrollment; a disabled enrollment refuses registration"
    )


def _blocking_step(
    draft: Draft, registration_id: str, chain: tuple[ParsedCert, ...], group: str | None
) -> Step:
    params = {"marker": draft.event.event_id, "attestation": AttestationType.SYMMETRIC_KEY.value}
    if chain:  # its CN is the registration ID (``certificate_mismatch`` refused any other)
        params.update(attestation=AttestationType.X509.value, certificate=chain[0].pem)
    via = f"group {group}" if group else "a group"
    return Step(
        StepKind.BLOCKING_ENROLLMENT_CREATED,
        registration_id,
        f"device came in through {via}: a disabled individual enrollment takes precedence over any "
        "group and is never deleted",
        params=params,
    )


def _add_hub_step(draft: Draft, action: HubAction, snap: InventorySnapshot) -> None:
    if action is HubAction.NONE:
        draft.warn(
            "policy leaves the hub identity unchanged; the device stays connected until it disconnects"
        )
        return
    resolved = resolve_hub(draft, snap)
    if resolved is None:
        return
    hub, device_id = resolved
    verb = "disabled" if action is HubAction.DISABLE else "deleted"
    params = {"statusReason": status_reason(draft.event)} if action is HubAction.DISABLE else {}
    draft.steps.append(
        Step(
            _HUB_KIND[action],
            device_id,
            f"after DPS, the identity in its hub is {verb} so an existing connection cannot continue",
            hub=hub,
            params=params,
        )
    )
