"""Audit remediation: re-apply, through the engine, the revocations the audit found no longer holding.

Split from ``unprovision.audit``, whose ``run_audit`` calls ``remediate`` here when asked to
(``remediate=True`` / ``--remediate``). That module imports this one lazily, at call time, since this one
imports it.

Only ``REMEDIABLE`` checks are acted on, once per original revocation: a synthetic event of the original type
(``source: "audit"``, eventId from ``synthetic_event_id``) journaled as its own event. A revocation with any
suppressed finding is skipped and reported as ``skipped``; nothing else is changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.audit import REMEDIABLE, Finding, Remediation, Revocation, revocation_of, synthetic_event_id
from shared.errors import UnprovisionError
from shared.ports import DeviceRegistries, Journal, ProvisioningService
from unprovision.audit import ApplyFn, _is_group, _iso


def remediate(
    report_id: str, active: list[Finding], suppressed: list[Finding], journal: Journal, *, now: datetime,
    apply_fn: ApplyFn,
) -> list[Remediation]:
    """Re-apply each original revocation once, unless one of its findings is suppressed (never touched)."""
    by_event: dict[str, list[Finding]] = {}
    for f in active:
        if f.check in REMEDIABLE and f.event_id:
            by_event.setdefault(f.event_id, []).append(f)
    blocked = {f.event_id for f in suppressed if f.event_id}
    out: list[Remediation] = []
    for original, found in by_event.items():
        event_id = synthetic_event_id(report_id, found[0])
        checks = tuple(sorted({f.check.value for f in found}))
        record = journal.get(original)
        rev = revocation_of(record) if record else None
        if original in blocked or rev is None:
            why = "a finding on this revocation is suppressed" if original in blocked else "event gone"
            out.append(Remediation(event_id, original, found[0].resource, "skipped", checks, why))
            continue
        out.append(_apply_one(event_id, rev, checks, journal, now=now, apply_fn=apply_fn))
    return out


def _apply_one(
    event_id: str, rev: Revocation, checks: tuple[str, ...], journal: Journal, *, now: datetime,
    apply_fn: ApplyFn,
) -> Remediation:
    """A synthetic event of the original type, ``source: "audit"``, journaled as its own event."""
    from shared.events import parse_event

    body = {
        "eventId": event_id, "type": rev.event_type, "occurredAt": _iso(now), "source": "audit",
        "note": f"audit re-applies {rev.event_id}"[:128],
        ("enrollmentGroupId" if _is_group(rev) else "registrationId"): rev.target,
    }
    try:
        apply_fn(parse_event(body))
    except UnprovisionError as exc:
        error = f"{type(exc).__name__}: {exc}"
        return Remediation(event_id, rev.event_id, rev.target, "failed", checks, error)
    record = journal.get(event_id)
    status = record.status if record else "unknown"
    return Remediation(event_id, rev.event_id, rev.target, status, checks, record.error if record else None)


def default_apply(dps: ProvisioningService, registries: DeviceRegistries, journal: Journal) -> ApplyFn:
    """The engine (``unprovision.orchestrator.apply``) on the audit's own ports.

    Uses the default policy and no notifier; callers that need the configured policy or outcome notifications
    pass ``apply_fn`` themselves (the CLI does, through ``unprovision.wiring``).
    """
    from shared.policy import DEFAULT_POLICY
    from unprovision import orchestrator

    def apply(event: Any) -> Any:
        return orchestrator.apply(event, dps=dps, registries=registries, journal=journal,
                                  policy=DEFAULT_POLICY)

    return apply
