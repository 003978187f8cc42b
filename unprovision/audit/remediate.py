"""Audit remediation: re-apply, through the engine, the revocations the audit found no longer holding.

Only ``REMEDIABLE`` checks are acted on, once per original revocation: a synthetic event of the original type
(``source: "audit"``, eventId from ``synthetic_event_id``) journaled as its own event. A revocation with any
suppressed finding is skipped and reported as ``skipped``; nothing else is changed. The engine comes from the
caller (``apply``): the audit never builds one, so remediation uses the app's policy, notifier, group work and
shared registry budget like any other event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from shared.audit import REMEDIABLE, Finding, Revocation, applied_revocation, synthetic_event_id
from shared.audit_report import Remediation
from shared.errors import UnprovisionError
from shared.events import LifecycleEvent, parse_event
from shared.ports import Journal
from unprovision.audit.revocations import is_group
from unprovision.outcomes import Outcome

Apply = Callable[[LifecycleEvent], Outcome]
MAX_NOTE = 128


def remediate(
    report_id: str, active: Sequence[Finding], suppressed: Sequence[Finding], journal: Journal, *,
    now: datetime, apply: Apply,
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
        rev = applied_revocation(record) if record else None
        if original in blocked or rev is None:
            why = "a finding on this revocation is suppressed" if original in blocked else "event gone"
            out.append(Remediation(event_id, original, found[0].resource, "skipped", checks, why))
            continue
        out.append(_apply_one(event_id, rev, checks, now=now, apply=apply))
    return out


def synthetic_event(event_id: str, rev: Revocation, now: datetime) -> LifecycleEvent:
    """The original revocation again, as a new event from ``source: "audit"``."""
    return parse_event({
        "eventId": event_id, "type": rev.event_type, "source": "audit",
        "occurredAt": now.isoformat().replace("+00:00", "Z"),
        "note": f"audit re-applies {rev.event_id}"[:MAX_NOTE],
        ("enrollmentGroupId" if is_group(rev) else "registrationId"): rev.target,
    })


def _apply_one(event_id: str, rev: Revocation, checks: tuple[str, ...], *, now: datetime,
               apply: Apply) -> Remediation:
    try:
        outcome = apply(synthetic_event(event_id, rev, now))
    except UnprovisionError as exc:
        error = f"{type(exc).__name__}: {exc}"
        return Remediation(event_id, rev.event_id, rev.target, "failed", checks, error)
    return Remediation(event_id, rev.event_id, rev.target, str(outcome.status), checks, outcome.error)
