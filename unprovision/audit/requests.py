"""Audits requested over HTTP, run from a queue, one at a time.

``POST /api/audit`` calls ``request_audit``: it takes the audit lease (``shared.ports.AuditLease``, one
row in Table storage) for a new audit id in state ``queued`` and sends ``{"auditId", "remediate"}`` to the
audit queue; while another audit holds the lease it is refused and the holder is named (HTTP 409). The
queue-triggered function calls ``run_requested_audit``, which moves the lease to ``running`` and runs
``run_audit`` under the same id (the report is stored under it), then frees the lease. The timer and the
CLI take the same lease (``run_exclusive``), so no two audits ever run at once. A lease outlives a crashed
run by at most ``lease_ttl``. ``audit_status`` answers the status route from the lease and the report store.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.audit_report import AuditReport
from shared.errors import FieldError, Rejected
from shared.ports import AuditLease, AuditLeaseRecord, WorkQueue
from unprovision.audit.run import AuditPorts, new_report_id, run_audit

log = logging.getLogger(__name__)
QUEUED, RUNNING, COMPLETED, UNKNOWN = "queued", "running", "completed", "unknown"
DEFAULT_LEASE_TTL = timedelta(hours=2)
AUDIT_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\Z")


@dataclass(frozen=True)
class AuditService:
    """An audit's ports, the one-at-a-time lease and the queue requested audits wait in."""

    ports: AuditPorts
    lease: AuditLease
    requests: WorkQueue
    lease_ttl: timedelta = DEFAULT_LEASE_TTL


@dataclass(frozen=True)
class AuditRequest:
    """``accepted``: ``audit_id`` was queued. Otherwise ``audit_id`` names the audit that holds the lease."""

    audit_id: str
    accepted: bool
    state: str


@dataclass(frozen=True)
class AuditStatus:
    audit_id: str
    state: str  # queued | running | completed | unknown
    report: Mapping[str, Any] | None = None


def check_audit_id(audit_id: str) -> str:
    if not AUDIT_ID.match(audit_id):
        raise Rejected([FieldError("auditId", "not an audit id (yyyymmddThhmmssZ-8 hex digits)")],
                       "invalid auditId")
    return audit_id


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _lease(audit_id: str, state: str, remediate: bool, now: datetime, ttl: timedelta) -> AuditLeaseRecord:
    return AuditLeaseRecord(audit_id, state, remediate, _iso(now), _iso(now + ttl))


def request_audit(service: AuditService, *, remediate: bool, now: datetime) -> AuditRequest:
    """Queue a new audit unless one is queued or running (then name that one)."""
    audit_id = new_report_id(now)
    holder = service.lease.claim(_lease(audit_id, QUEUED, remediate, now, service.lease_ttl), _iso(now))
    if holder.audit_id != audit_id:
        return AuditRequest(holder.audit_id, False, holder.state)
    try:
        service.requests.send({"auditId": audit_id, "remediate": remediate})
    except Exception:
        service.lease.release(audit_id)  # never leave a lease for an audit nobody will run
        raise
    return AuditRequest(audit_id, True, QUEUED)


def audit_status(service: AuditService, audit_id: str) -> AuditStatus:
    """``completed`` with the report, ``queued``/``running`` while it holds the lease, else ``unknown``."""
    report = service.ports.reports.get(check_audit_id(audit_id))
    if report is not None:
        return AuditStatus(audit_id, COMPLETED, report)
    held = service.lease.current()
    if held is not None and held.audit_id == audit_id:
        return AuditStatus(audit_id, held.state)
    return AuditStatus(audit_id, UNKNOWN)


def parse_request(body: str | bytes) -> tuple[str, bool]:
    """(auditId, remediate) of an audit-queue message; ``Rejected`` when it is not one."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise Rejected([FieldError("$", "not JSON")], "invalid audit request") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("remediate", False), bool):
        raise Rejected([FieldError("remediate", "must be true or false")], "invalid audit request")
    return check_audit_id(str(doc.get("auditId", ""))), bool(doc.get("remediate", False))


def run_requested_audit(service: AuditService, body: str | bytes, *, now: datetime) -> AuditReport | None:
    """Run the audit a queue message asks for; None when another audit holds the lease (dropped)."""
    audit_id, remediate = parse_request(body)
    return run_exclusive(service, audit_id, remediate=remediate, now=now)


def run_exclusive(
    service: AuditService, audit_id: str, *, remediate: bool, now: datetime
) -> AuditReport | None:
    """``run_audit`` under the lease; None (and a log line) when another audit holds it."""
    record = _lease(audit_id, RUNNING, remediate, now, service.lease_ttl)
    holder = service.lease.claim(record, _iso(now))
    if holder.audit_id != audit_id:
        log.warning("audit %s not run: audit %s is %s", audit_id, holder.audit_id, holder.state)
        return None
    try:
        return run_audit(service.ports, now=now, remediate_findings=remediate, report_id=audit_id)
    finally:
        service.lease.release(audit_id)
