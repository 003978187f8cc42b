"""The audit's domain: check IDs, findings, suppressions, pure functions from facts to findings.

Nothing here reads the clock, the environment or a service: the ``unprovision.audit`` package streams the
facts (DPS, hubs, journal, poison queues) and passes them in, with the audit's ``now``. That keeps every
check testable on plain data and the report reproducible.

The report built from these findings is ``shared.audit_report`` (it depends on this module, never the
reverse); the fixed-size set the fleet join uses is ``shared.bloom``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.certs import groups_above
from shared.events import EventType
from shared.lifecycle import EventStatus, effective_attempt
from shared.model import (
    AttestationType,
    CertificateInfo,
    EnrollmentGroup,
    HubDevice,
    HubDeviceStatus,
    IndividualEnrollment,
    ProvisioningStatus,
)
from shared.plan import StepKind, StepOutcome, plan_from_dict
from shared.ports import EventRecord, StepRecord, SuppressionRecord
from shared.revocation_found import ONE_WAY, lifts_one_way


class CheckId(StrEnum):
    REVOCATION_REVERSED = "REVOCATION_REVERSED"
    BLOCKING_ENROLLMENT_MISSING = "BLOCKING_ENROLLMENT_MISSING"
    HUB_IDENTITY_STILL_ACTIVE = "HUB_IDENTITY_STILL_ACTIVE"
    REENROLLMENT_VIA_PARENT_GROUP = "REENROLLMENT_VIA_PARENT_GROUP"
    ORPHANED_REGISTRATIONS = "ORPHANED_REGISTRATIONS"
    HUB_DEVICE_WITHOUT_REGISTRATION = "HUB_DEVICE_WITHOUT_REGISTRATION"
    REGISTRATION_WITHOUT_HUB_DEVICE = "REGISTRATION_WITHOUT_HUB_DEVICE"
    SIGNING_CERT_EXPIRING = "SIGNING_CERT_EXPIRING"
    SIGNING_CERT_EXPIRED = "SIGNING_CERT_EXPIRED"
    POISON_MESSAGES_PENDING = "POISON_MESSAGES_PENDING"
    ONE_WAY_REVOCATION_UNDONE = "ONE_WAY_REVOCATION_UNDONE"
    EVENT_STUCK = "EVENT_STUCK"


class Severity(StrEnum):
    CRITICAL = "critical"  # a revoked device can get back in now
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True)
class CheckInfo:
    severity: Severity
    action: str


CHECKS: Mapping[CheckId, CheckInfo] = {
    CheckId.REVOCATION_REVERSED: CheckInfo(Severity.CRITICAL, "re-apply the revocation (audit --remediate)"),
    CheckId.BLOCKING_ENROLLMENT_MISSING: CheckInfo(
        Severity.CRITICAL, "re-create the disabled blocking enrollment (audit --remediate)"),
    CheckId.HUB_IDENTITY_STILL_ACTIVE: CheckInfo(
        Severity.CRITICAL, "disable or delete the hub identity again (audit --remediate)"),
    CheckId.REENROLLMENT_VIA_PARENT_GROUP: CheckInfo(
        Severity.HIGH, "re-create the group disabled, or add disabled individual enrollments\n        "
        "for its devices"),
    CheckId.ORPHANED_REGISTRATIONS: CheckInfo(
        Severity.LOW, "delete the group's registration records (they count toward the DPS quota)"),
    CheckId.HUB_DEVICE_WITHOUT_REGISTRATION: CheckInfo(
        Severity.MEDIUM, "find out who created the identity; disable it if nobody owns it"),
    CheckId.REGISTRATION_WITHOUT_HUB_DEVICE: CheckInfo(
        Severity.LOW, "the device is re-created when it re-provisions;\n        "
        "delete the record if it is retired"),
    CheckId.SIGNING_CERT_EXPIRING: CheckInfo(Severity.MEDIUM, "roll the group's signing certificate"),
    CheckId.SIGNING_CERT_EXPIRED: CheckInfo(Severity.HIGH, "replace the group's signing certificate"),
    CheckId.POISON_MESSAGES_PENDING: CheckInfo(
        Severity.HIGH, "inspect the poison messages, fix the cause and re-send the events"),
    CheckId.ONE_WAY_REVOCATION_UNDONE: CheckInfo(
        Severity.CRITICAL, "revoke the device again (audit --remediate); only a forced found lifts a theft"),
    CheckId.EVENT_STUCK: CheckInfo(
        Severity.HIGH, "re-send the event with the same eventId to resume it; check the poison queues"),
}

# The checks whose fix is "apply the journal's revocation again" through the orchestrator.
REMEDIABLE: frozenset[CheckId] = frozenset(
    {CheckId.REVOCATION_REVERSED, CheckId.BLOCKING_ENROLLMENT_MISSING, CheckId.HUB_IDENTITY_STILL_ACTIVE,
     CheckId.ONE_WAY_REVOCATION_UNDONE}
)
# Statuses of an event that is not finished yet: stuck when not updated for longer than a threshold.
UNFINISHED = frozenset({EventStatus.RECEIVED.value, EventStatus.IN_PROGRESS.value})
_NOT_APPLIED = frozenset({EventStatus.REFUSED.value, EventStatus.REJECTED.value})
_APPLIED = frozenset({StepOutcome.DONE.value, StepOutcome.ALREADY_DONE.value})
_HUB_DEVICE_STEPS = frozenset({StepKind.HUB_IDENTITY_DISABLED.value, StepKind.HUB_IDENTITY_DELETED.value})
_GROUP_FANOUT_STEPS = frozenset({StepKind.GROUP_DEVICES_DISABLED.value, StepKind.GROUP_DEVICES_DELETED.value})


@dataclass(frozen=True)
class Finding:
    check: CheckId
    resource: str  # registration ID, group ID, "hub/deviceId", or the queue name
    evidence: str
    severity: Severity
    action: str
    # The journal event whose revocation no longer holds (remediable checks only).
    event_id: str | None = None
    event_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check.value, "resource": self.resource, "evidence": self.evidence,
                "severity": self.severity.value, "action": self.action, "eventId": self.event_id,
                "eventType": self.event_type}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Finding:
        return cls(CheckId(doc["check"]), doc["resource"], doc["evidence"], Severity(doc["severity"]),
                   doc["action"], doc.get("eventId"), doc.get("eventType"))


def finding(check: CheckId, resource: str, evidence: str, *, event: Revocation | None = None) -> Finding:
    info = CHECKS[check]
    return Finding(check, resource, evidence, info.severity, info.action,
                   event.event_id if event else None, event.event_type if event else None)


@dataclass(frozen=True)
class Revocation:
    """What a completed journal event revoked, reduced to what the audit re-checks."""

    event_id: str
    event_type: str
    target: str
    dps_steps: frozenset[str]  # StepKind values applied to the target itself
    hub_devices: tuple[tuple[str, str, str], ...] = ()  # (kind, hub, device ID)
    group_fanout: tuple[str, ...] = ()  # GroupDevices* kinds applied across the group's devices


def revocation_of(record: EventRecord) -> Revocation | None:
    """The revocation a completed event made, or None for `found` and for events that changed nothing."""
    if record.status != EventStatus.COMPLETED.value:
        return None
    return applied_revocation(record)


def applied_revocation(record: EventRecord) -> Revocation | None:
    """What an event (whatever its status) changed, or None for `found` and for events that changed nothing.

    Several attempts per step: the one ``shared.lifecycle.effective_attempt`` picks stands for it.
    """
    if record.event_type == EventType.FOUND.value:
        return None
    attempts: dict[int, list[StepRecord]] = {}
    for step in record.steps:
        attempts.setdefault(step.index, []).append(step)
    chosen = (effective_attempt(a) for _, a in sorted(attempts.items()))
    applied = [s for s in chosen if s.outcome in _APPLIED]
    dps = frozenset(s.kind for s in applied if s.kind not in _HUB_DEVICE_STEPS | _GROUP_FANOUT_STEPS)
    hub = tuple((s.kind, s.hub, s.target) for s in applied if s.kind in _HUB_DEVICE_STEPS and s.hub)
    fanout = tuple(sorted({s.kind for s in applied if s.kind in _GROUP_FANOUT_STEPS}))
    if not (dps or hub or fanout):
        return None
    return Revocation(record.event_id, record.event_type, record.target, dps, hub, fanout)


def one_way_in_force(history: Iterable[EventRecord]) -> Revocation | None:
    """The theft that still binds a target (history newest first): the newest ``stolen``/``compromised``
    that was not refused, unless a ``found`` that lifted it with force completed after it."""
    for record in history:
        if record.status in _NOT_APPLIED:
            continue
        if record.event_type == EventType.FOUND.value and _lifted(record):
            return None
        if record.event_type in ONE_WAY:
            return applied_revocation(record)
    return None


def _lifted(found_record: EventRecord) -> bool:
    if found_record.status != EventStatus.COMPLETED.value or not found_record.plan:
        return False
    return lifts_one_way(plan_from_dict(found_record.plan))


def check_one_way(
    rev: Revocation, enrollment: IndividualEnrollment | None, devices: Sequence[HubDevice]
) -> list[Finding]:
    """A stolen/compromised device that is enabled again in DPS or in its hub with no forced found since.

    ``devices`` are the hub identities the theft disabled or deleted, as they are now (absent ones left out).
    """
    out: list[Finding] = []
    why = f"{rev.event_type} by {rev.event_id} and no forced found lifted it"
    blocked = StepKind.BLOCKING_ENROLLMENT_CREATED.value in rev.dps_steps
    disabled = StepKind.ENROLLMENT_DISABLED.value in rev.dps_steps
    enabled = enrollment is not None and enrollment.status == ProvisioningStatus.ENABLED
    if (blocked and (enrollment is None or enabled)) or (disabled and enabled):
        state = "blocking enrollment is gone" if enrollment is None else "enrollment is enabled"
        out.append(finding(CheckId.ONE_WAY_REVOCATION_UNDONE, rev.target, f"{state}; {why}", event=rev))
    out.extend(finding(CheckId.ONE_WAY_REVOCATION_UNDONE, f"{d.hub}/{d.device_id}",
                       f"hub identity is enabled; {why}", event=rev)
               for d in devices if d.status == HubDeviceStatus.ENABLED)
    return out


def check_stuck(record: EventRecord, now: datetime, threshold: timedelta) -> list[Finding]:
    """An event still ``received``/``in_progress`` that nothing has updated for longer than ``threshold``."""
    stamp = record.updated_at or record.created_at
    if record.status not in UNFINISHED or not stamp:
        return []
    try:
        idle = now - parse_time(stamp)
    except ValueError:
        return []
    if idle <= threshold:
        return []
    minutes = int(idle.total_seconds() // 60)
    return [finding(CheckId.EVENT_STUCK, record.event_id,
                    f"{record.event_type} on {record.target} is {record.status}, "
                    f"not updated for {minutes} min (since {stamp})")]


def check_enrollment(rev: Revocation, enrollment: IndividualEnrollment | None) -> list[Finding]:
    """Individual-enrollment revocations: the disabled own enrollment, or a group member's blocking one.

    An own enrollment that was disabled and later deleted is not reported: whether the device can come back
    depends on a group covering its certificate, which the audit cannot see per device (documented limit).
    """
    out: list[Finding] = []
    blocked = StepKind.BLOCKING_ENROLLMENT_CREATED.value in rev.dps_steps
    disabled = StepKind.ENROLLMENT_DISABLED.value in rev.dps_steps
    if blocked and enrollment is None:
        out.append(finding(CheckId.BLOCKING_ENROLLMENT_MISSING, rev.target,
                           f"blocking enrollment created by {rev.event_id} is gone", event=rev))
    elif (blocked or disabled) and enrollment is not None and enrollment.status == ProvisioningStatus.ENABLED:
        out.append(finding(CheckId.REVOCATION_REVERSED, rev.target,
                           f"enrollment disabled by {rev.event_id} ({rev.event_type}) is enabled", event=rev))
    return out


def check_group(rev: Revocation, group: EnrollmentGroup | None) -> list[Finding]:
    """A group disabled (or deleted) by the app that is enabled again (or was re-created enabled)."""
    revoked = {StepKind.GROUP_DISABLED.value, StepKind.GROUP_DELETED.value} & rev.dps_steps
    if not revoked or group is None or group.status != ProvisioningStatus.ENABLED:
        return []
    what = "re-created and enabled" if StepKind.GROUP_DELETED.value in revoked else "enabled"
    return [finding(CheckId.REVOCATION_REVERSED, rev.target,
                    f"group revoked by {rev.event_id} ({rev.event_type}) is {what}", event=rev)]


def check_hub_device(rev: Revocation, kind: str, hub: str, device: HubDevice | None) -> list[Finding]:
    """A hub identity the app disabled or deleted that is enabled (again, or re-created).

    A deleted identity that reappeared *disabled* is not reported: it cannot connect (deliberate choice).
    """
    if device is None or device.status != HubDeviceStatus.ENABLED:
        return []
    how = "re-created and enabled" if kind == StepKind.HUB_IDENTITY_DELETED.value else "enabled"
    return [finding(CheckId.HUB_IDENTITY_STILL_ACTIVE, f"{hub}/{device.device_id}",
                    f"identity revoked by {rev.event_id} ({rev.event_type}) is {how}", event=rev)]


@dataclass(frozen=True)
class GroupSnapshot:
    """What the audit remembers of a group between runs (groups are few: DPS allows 200), PEMs left out."""

    group_id: str
    status: str
    attestation: str
    certificates: tuple[CertificateInfo, ...] = ()

    @classmethod
    def of(cls, group: EnrollmentGroup) -> GroupSnapshot:
        certs = tuple(replace(c, pem=None) for c in group.signing_certificates)
        return cls(group.group_id, group.status.value, group.attestation.value, certs)

    def as_group(self) -> EnrollmentGroup:
        return EnrollmentGroup(self.group_id, AttestationType(self.attestation),
                               ProvisioningStatus(self.status), self.certificates)

    def to_json(self) -> dict[str, Any]:
        return {"groupId": self.group_id, "status": self.status, "attestation": self.attestation,
                "certificates": [asdict(c) for c in self.certificates]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> GroupSnapshot:
        certs = tuple(CertificateInfo(**c) for c in doc.get("certificates", ()))
        return cls(doc["groupId"], doc["status"], doc["attestation"], certs)


def check_parent_group(
    child: EnrollmentGroup, gone: bool, groups: Sequence[EnrollmentGroup]
) -> list[Finding]:
    """A deleted group whose devices an enabled group higher in the chain admits (HIGH); a disabled one (LOW).

    DPS walks the chain leaf→root and the first group found decides (docs/azure-behaviour.md §1.1, §1.2), so
    the group nearest above the child decides once the child is gone (``shared.certs.groups_above``; linked by
    signature when PEMs are known, else by subject/issuer name). A *disabled* group still refuses its devices
    even with an enabled ancestor; it is reported anyway, as LOW: deleting it would let them in.
    """
    if not gone and child.status != ProvisioningStatus.DISABLED:
        return []
    pool = [g for g in groups if g.group_id.lower() != child.group_id.lower()]
    coverage = groups_above(child, [*pool, child])
    parent = coverage.nearest
    if parent is None or parent.status != ProvisioningStatus.ENABLED:
        return []
    if gone:
        return [finding(CheckId.REENROLLMENT_VIA_PARENT_GROUP, child.group_id,
                        f"group is deleted; enabled group {parent.group_id} higher in the chain "
                        "admits its devices")]
    return [Finding(CheckId.REENROLLMENT_VIA_PARENT_GROUP, child.group_id,
                    f"group is disabled (blocks for now); deleting it would let enabled group "
                    f"{parent.group_id} admit its devices", Severity.LOW,
                    "keep the group disabled; never delete it")]


def parse_time(value: str) -> datetime:
    """RFC 3339 (a trailing Z accepted); naive values are taken as UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def check_signing_certs(group: EnrollmentGroup, now: datetime, threshold_days: int) -> list[Finding]:
    """Enabled groups only: an expired signing certificate on a revoked (disabled) group is not actionable."""
    if group.status != ProvisioningStatus.ENABLED:
        return []
    out: list[Finding] = []
    for cert in group.signing_certificates:
        try:
            expires = parse_time(cert.not_after or "")
        except ValueError:
            continue  # no or unreadable notAfter: nothing to say about expiry
        label = f"signing certificate {cert.subject!r} (notAfter {cert.not_after})"
        if expires <= now:
            out.append(finding(CheckId.SIGNING_CERT_EXPIRED, group.group_id, f"{label} has expired"))
        elif expires - now <= timedelta(days=threshold_days):
            days = (expires - now).days
            evidence = f"{label} expires in {days} days"
            out.append(finding(CheckId.SIGNING_CERT_EXPIRING, group.group_id, evidence))
    return out


def check_poison(queue: str, count: int, sample_ids: Sequence[str]) -> list[Finding]:
    if count <= 0:
        return []
    shown = ", ".join(sample_ids[:5])
    return [finding(CheckId.POISON_MESSAGES_PENDING, queue, f"{count} message(s) waiting; first: {shown}")]


def check_orphans(group_id: str, count: int, sample_ids: Sequence[str]) -> list[Finding]:
    if count <= 0:
        return []
    shown = ", ".join(sample_ids[:5])
    return [finding(CheckId.ORPHANED_REGISTRATIONS, group_id,
                    f"deleted group still has {count} registration record(s), e.g. {shown}")]


def active_suppression(
    f: Finding, suppressions: Iterable[SuppressionRecord], now: datetime
) -> SuppressionRecord | None:
    """The suppression that covers the finding now; an expired one no longer applies."""
    for s in suppressions:
        same = s.check == f.check.value and s.resource.lower() == f.resource.lower()
        if same and parse_time(s.until) > now:
            return s
    return None


def synthetic_event_id(report_id: str, f: Finding) -> str:
    """A new event ID per (audit run, finding): re-running one audit is idempotent, a later run acts anew."""
    name = f"unprovision-audit:{report_id}:{f.check}:{f.resource.lower()}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


@dataclass
class FindingCollector:
    """Keeps at most ``limit`` findings per check (counts stay exact), so the report's size is bounded."""

    limit: int = 1000
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, items: Iterable[Finding]) -> None:
        for f in items:
            n = self.counts.get(f.check.value, 0)
            self.counts[f.check.value] = n + 1
            if n < self.limit:
                self.findings.append(f)
