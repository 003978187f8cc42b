"""The audit run: stream DPS, the hubs, the journal and the poison queues; turn facts into findings; report.

``run_audit`` is what the timer, the queue-triggered HTTP audit and ``python -m unprovision audit`` run, on
collaborators their caller passes in (``AuditPorts``; the wiring builds them). The checks themselves are
pure (``shared.audit``); the modules of this package only read, meter and join. Memory is bounded by
settings, never by fleet size (docs/audit.md, "Scale and throttling").
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.audit import Finding, FindingCollector, active_suppression, parse_time
from shared.audit_report import AuditReport, Remediation
from shared.ports import (
    AuditReportStore,
    DeviceRegistries,
    Journal,
    PoisonQueue,
    ProvisioningService,
    RateLimiter,
    SuppressionRecord,
    SuppressionStore,
)
from unprovision.audit.fleet import check_fleet
from unprovision.audit.groups import check_groups
from unprovision.audit.health import check_poison_queues, check_stuck_events
from unprovision.audit.reader import AuditReader
from unprovision.audit.remediate import Apply, remediate
from unprovision.audit.revocations import check_revocations, check_thefts
from unprovision.audit.settings import AuditSettings
from unprovision.throttle import Sleep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditPorts:
    """What an audit reads and writes. ``hub_limiter`` is the app's shared per-hub registry budget (the one
    the engine spends); ``apply`` is the engine's entry point, used only to remediate; ``poison_queues`` are
    every poison queue the app owns (lifecycle queue and work queue)."""

    dps: ProvisioningService
    registries: DeviceRegistries
    journal: Journal
    reports: AuditReportStore
    suppressions: SuppressionStore
    poison_queues: Sequence[PoisonQueue]
    hub_limiter: RateLimiter
    apply: Apply
    settings: AuditSettings
    sleep: Sleep = time.sleep


def new_report_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def run_audit(ports: AuditPorts, *, now: datetime, remediate_findings: bool = False,
              report_id: str | None = None) -> AuditReport:
    """Run every check, honour suppressions, optionally remediate, store and log the report, return it.

    ``now`` is the audit's clock (expiry of certificates and suppressions, stuck events, timestamps);
    ``report_id`` names the report (an audit requested over HTTP keeps its id), else a new one.
    """
    rid = report_id or new_report_id(now)
    started = time.monotonic()
    reader = _checked(ports, now)
    in_force = _in_force(ports.suppressions, now, reader.notes)
    active, suppressed, counts = _split(reader.found, in_force, now)
    remediations: list[Remediation] = []
    if remediate_findings:
        remediations = remediate(rid, active, [f for f, _ in suppressed], ports.journal, now=now,
                                 apply=ports.apply)
    report = AuditReport(
        rid, started_at=_iso(now), finished_at=_iso(now, time.monotonic() - started),
        remediate=remediate_findings, findings=tuple(active), suppressed=tuple(suppressed),
        suppressions=in_force, remediations=tuple(remediations), counts=counts, errors=tuple(reader.errors),
        notes=tuple(reader.notes), groups=reader.snapshots(),
    )
    ports.reports.save(report.to_json())
    log.info("audit %s summary %s", rid, json.dumps(report.summary(), sort_keys=True))
    return report


def _checked(ports: AuditPorts, now: datetime) -> AuditReader:
    """A reader that has run every check (a check that fails is reported; the others still run)."""
    reader = AuditReader(ports.settings, dps=ports.dps, registries=ports.registries, journal=ports.journal,
                         hub_limiter=ports.hub_limiter, sleep=ports.sleep)
    reader.load_groups(ports.reports)
    reader.guard("revocations", lambda: check_revocations(reader))
    reader.guard("thefts", lambda: check_thefts(reader))
    reader.guard("groups", lambda: check_groups(reader, now))
    reader.guard("fleet", lambda: check_fleet(reader))
    reader.guard("stuck events", lambda: check_stuck_events(reader, now))
    check_poison_queues(reader, ports.poison_queues)
    return reader


def _in_force(store: SuppressionStore, now: datetime, notes: list[str]) -> tuple[SuppressionRecord, ...]:
    """Suppressions whose ``until`` is still ahead; an unreadable one is ignored and noted."""
    out: list[SuppressionRecord] = []
    for s in store.iter_all():
        try:
            if parse_time(s.until) > now:
                out.append(s)
        except ValueError:
            notes.append(f"suppression {s.check} {s.resource} ignored: unreadable until {s.until!r}")
    return tuple(out)


def _split(
    found: FindingCollector, in_force: tuple[SuppressionRecord, ...], now: datetime
) -> tuple[list[Finding], list[tuple[Finding, SuppressionRecord]], dict[str, int]]:
    """Suppressed findings leave the findings and the counts; they are listed apart in the report."""
    active: list[Finding] = []
    suppressed: list[tuple[Finding, SuppressionRecord]] = []
    counts = dict(found.counts)
    for f in found.findings:
        s = active_suppression(f, in_force, now)
        if s is None:
            active.append(f)
        else:
            suppressed.append((f, s))
            counts[f.check.value] -= 1
    return active, suppressed, {k: v for k, v in counts.items() if v}


def _iso(now: datetime, plus_seconds: float = 0.0) -> str:
    return (now + timedelta(seconds=plus_seconds)).isoformat().replace("+00:00", "Z")
