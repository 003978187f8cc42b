"""The revocation planner: ``plan_revocation(event, policy, snapshot) -> Plan``, a pure function.

It decides, from what the inventory snapshot shows, which DPS steps and then which hub steps revoke
(or restore) a device or a group, each with its reason, plus warnings and refusals. It does no I/O and
reads no clock.

Decisions not pinned by a documented source (reference §1):
* Idempotent planning: a step whose effect the snapshot already shows is still planned; the orchestrator
  reports it ``already_done``. A missing hub identity likewise still gets its hub step, with a warning.
* A device that never registered but whose certificate (sent in the event) is covered by a group that may
  admit it gets a blocking enrollment pre-emptively, so that it can never register; without a certificate
  such an event is refused (there is nothing known to revoke).
* For an X.509 blocking enrollment the registration ID is the leaf CN (DPS keys X.509 enrollments on it); a
  different registrationId in the event is reported as a warning.

Layout: one device is planned here; ``found`` in ``shared.revocation_found`` and a whole group in
``shared.revocation_group`` (each with its own undocumented decisions). They build on ``Draft``,
``resolve_hub`` and ``group_names`` from this module, which is why they are imported late (no cycle).
"""

from __future__ import annotations

from shared.certs import ParsedCert, device_coverage
from shared.events import EventType, LifecycleEvent
from shared.ids import same_dps_id
from shared.model import (
    AttestationType,
    EnrollmentGroup,
    InventorySnapshot,
    ProvisioningStatus,
)
from shared.plan import Plan, Service, Step, StepKind
from shared.policy import EnrollmentAction, HubAction, Policy

_HUB_KIND = {
    HubAction.DISABLE: StepKind.HUB_IDENTITY_DISABLED,
    HubAction.DELETE: StepKind.HUB_IDENTITY_DELETED,
}
_MAX_STATUS_REASON = 128


class Draft:
    """Steps and warnings collected while planning one event (shared with the found and group planners)."""

    def __init__(self, event: LifecycleEvent) -> None:
        self.event = event
        self.steps: list[Step] = []
        self.warnings: list[str] = []

    def warn(self, *messages: str) -> None:
        self.warnings.extend(m for m in messages if m not in self.warnings)

    def plan(self) -> Plan:
        dps = [s for s in self.steps if s.service is Service.DPS]
        hub = [s for s in self.steps if s.service is not Service.DPS]
        return Plan(
            self.event.event_id,
            self.event.type.value,
            self.event.target,
            steps=tuple(dps + hub),
            warnings=tuple(self.warnings),
        )

    def refuse(self, message: str) -> Plan:
        return Plan(
            self.event.event_id,
            self.event.type.value,
            self.event.target,
            warnings=tuple(self.warnings),
            refusal=message,
        )


def plan_revocation(event: LifecycleEvent, policy: Policy, snapshot: InventorySnapshot) -> Plan:
    """The plan for one validated event over the snapshot of its target (DPS steps first, then hub steps)."""
    from shared.revocation_found import plan_found  # late: both build on this module's Draft
    from shared.revocation_group import plan_group

    draft = Draft(event)
    if event.is_group:
        return plan_group(draft, policy, snapshot)
    if event.type is EventType.FOUND:
        return plan_found(draft, snapshot)
    return _plan_device(draft, policy, snapshot)


def status_reason(event: LifecycleEvent) -> str:
    """The hub's statusReason: the event's note, else a short description (at most 128 characters)."""
    return (event.note or f"{event.type.value}: event {event.event_id}")[:_MAX_STATUS_REASON]


# --- one device -------------------------------------------------------------------------------------------


def _plan_device(draft: Draft, policy: Policy, snap: InventorySnapshot) -> Plan:
    event = draft.event
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
    target = registration_id
    if chain:
        leaf = chain[0]
        target = leaf.common_name or registration_id
        params.update(attestation=AttestationType.X509.value, certificate=leaf.pem)
        if not same_dps_id(target, registration_id):
            draft.warn(
                f"leaf certificate CN {target!r} differs from {registration_id!r}; the blocking "
                "enrollment uses the CN, which DPS matches"
            )
    via = f"group {group}" if group else "a group"
    return Step(
        StepKind.BLOCKING_ENROLLMENT_CREATED,
        target,
        f"device came in through {via}: a disabled individual enrollment takes precedence over any "
        "group and is never deleted",
        params=params,
    )


def resolve_hub(draft: Draft, snap: InventorySnapshot) -> tuple[str, str] | None:
    """(hub, device ID) of the device's identity: registration first, then the hub device, else None."""
    reg, dev, enr, event = snap.registration, snap.hub_device, snap.enrollment, draft.event
    hub = (reg.assigned_hub if reg else None) or (dev.hub if dev else None)
    if hub is None:
        draft.warn(
            f"no hub known for {event.target} (no assignedHub, no hub identity): hub identity not changed"
        )
        return None
    own_device_id = enr.device_id if enr is not None and not enr.is_blocking else None
    device_id = (
        (reg.device_id if reg else None)
        or (dev.device_id if dev and dev.hub == hub else None)
        or event.device_id
        or own_device_id
        or event.target
    )
    if event.device_id is not None and event.device_id != device_id:
        draft.warn(
            f"event deviceId {event.device_id!r} differs from the hub device ID {device_id!r} DPS assigned;"
            " the assigned one is used"
        )
    if dev is None:
        draft.warn(f"hub identity {device_id} not found on {hub}; its step will report already done")
    return hub, device_id


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


def group_names(groups: tuple[EnrollmentGroup, ...] | list[EnrollmentGroup]) -> str:
    """Distinct group IDs, in order, for warnings."""
    return ", ".join(dict.fromkeys(g.group_id for g in groups))
