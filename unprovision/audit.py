"""The audit run: stream DPS, the hubs, the journal and the poison queue; turn facts into findings; report.

One function, ``run_audit``, used by the timer, the HTTP route and ``python -m unprovision audit``. The checks
themselves are pure (``shared.audit``); this module only reads, meters and joins. Remediation (re-applying
revocations that no longer hold) is ``unprovision.audit_remediate``.

Scale (memory bounded by settings, never by fleet size; calls bounded and metered):

* Every listing is streamed (``iter_*``). Groups are held in memory: DPS allows at most 200.
* Revocation checks are journal-driven: one ``history`` read per completed revocation (to skip superseded
  ones and those undone by ``found``), then point reads of exactly what it revoked. Group fan-out revocations
  stream the group's registration records and point-read each device (1 identity op each).
* Hub ↔ DPS join (``unprovision.audit_fleet``): two Bloom filters of fixed size (``filter_capacity``) and
  three streaming passes; candidates are point-confirmed up to ``max_findings_per_check``, further ones are
  counted, not confirmed (noted in the report).
* Throttle: every call spends from a ``RateLimiter``: ``"dps"`` (service API ops), ``"<hub>"`` (identity
  registry ops, the bucket the engine shares) and ``"<hub>#query"`` (one query per listed page; S1: 20/min).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

from shared.audit import (
    AuditReport,
    BloomFilter,
    CheckId,
    Finding,
    FindingCollector,
    GroupSnapshot,
    Remediation,
    Revocation,
    active_suppression,
    check_enrollment,
    check_group,
    check_hub_device,
    check_orphans,
    check_parent_group,
    check_poison,
    check_signing_certs,
    parse_time,
    revocation_of,
)
from shared.errors import HubNotConfigured, UnprovisionError
from shared.model import EnrollmentGroup, RegistrationState
from shared.plan import StepKind
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
from unprovision.throttle import HubBudget, InMemoryRateLimiter, wait_for

log = logging.getLogger(__name__)
T = TypeVar("T")
DPS_KEY = "dps"
_GROUP_STEPS = frozenset({StepKind.GROUP_DISABLED.value, StepKind.GROUP_DELETED.value})
_ENROLLMENT_STEPS = frozenset(
    {StepKind.ENROLLMENT_DISABLED.value, StepKind.BLOCKING_ENROLLMENT_CREATED.value}
)


_ALIASES = {"cert_threshold_days": ("cert_expiry_warning_days",)}  # the app's Settings name (CERT_EXPIRY_...)


@dataclass(frozen=True)
class AuditSettings:
    """The audit's knobs; ``from_settings`` reads ``audit_<name>`` or ``<name>`` from any settings object."""

    cert_threshold_days: int = 30
    max_findings_per_check: int = 200
    filter_capacity: int = 1_000_000  # Bloom filters: ~1.2 MB each at 1 % error
    filter_error_rate: float = 0.01
    page_size: int = 100
    hub_queries_per_minute: float = 20.0  # S1, one unit
    dps_ops_per_minute: float = 500.0  # half the documented 1,000/min: live revocations keep the rest
    check_individual_registrations: bool = True  # one DPS read per enabled own enrollment, twice per run

    @classmethod
    def from_settings(cls, settings: Any) -> AuditSettings:
        if isinstance(settings, AuditSettings):
            return settings
        values: dict[str, Any] = {}
        for f in fields(cls):
            for name in (f"audit_{f.name}", f.name, *_ALIASES.get(f.name, ())):
                value = settings.get(name) if isinstance(settings, dict) else getattr(settings, name, None)
                if value is not None:
                    values[f.name] = value
                    break
        return cls(**values)


ApplyFn = Callable[[Any], Any]


def default_limiter(cfg: AuditSettings, hubs: Iterable[str]) -> InMemoryRateLimiter:
    """Budgets for the audit's own keys when the caller shares no limiter (identity ops: the S1 default)."""
    budgets = {DPS_KEY: HubBudget(cfg.dps_ops_per_minute, cfg.dps_ops_per_minute)}
    budgets |= {f"{h}#query": HubBudget(cfg.hub_queries_per_minute, cfg.hub_queries_per_minute) for h in hubs}
    return InMemoryRateLimiter(budgets)


def run_audit(
    *, dps: ProvisioningService, registries: DeviceRegistries, journal: Journal, poison: PoisonQueue | None,
    reports: AuditReportStore, suppressions: SuppressionStore, now: datetime, settings: Any,
    remediate: bool = False, apply_fn: ApplyFn | None = None, rate_limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> AuditReport:
    """Run every check, honour suppressions, optionally remediate, store and log the report, return it.

    ``now`` is the audit's clock (certificate expiry, suppression expiry, timestamps); ``settings`` is an
    ``AuditSettings`` or any object/dict with ``audit_*`` names. ``poison`` may be None (no queue configured).
    """
    cfg = AuditSettings.from_settings(settings)
    limiter = rate_limiter or default_limiter(cfg, list(registries.hubs()))
    audit = _Audit(cfg, limiter, sleep, dps=dps, registries=registries, journal=journal)
    report_id = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    audit.load_groups(reports)
    audit.guard("revocations", audit.check_revocations)
    audit.guard("groups", lambda: audit.check_groups(now))
    audit.guard("fleet", audit.check_fleet)
    if poison is not None:
        audit.guard("poison queue", lambda: audit.check_poison(poison))
    in_force = _in_force(suppressions, now, audit.notes)
    active, suppressed, counts = _split(audit.found, in_force, now)
    remediations: list[Remediation] = []
    if remediate:
        from unprovision import audit_remediate  # imported here: that module imports this one

        apply = apply_fn or audit_remediate.default_apply(dps, registries, journal)
        left_alone = [f for f, _ in suppressed]
        remediations = audit_remediate.remediate(report_id, active, left_alone, journal, now=now,
                                                 apply_fn=apply)
    report = AuditReport(
        report_id, started_at=_iso(now), finished_at=_iso(now, time.monotonic() - started),
        remediate=remediate, findings=tuple(active), suppressed=tuple(suppressed), suppressions=in_force,
        remediations=tuple(remediations), counts=counts, errors=tuple(audit.errors), notes=tuple(audit.notes),
        groups=audit.snapshots(),
    )
    reports.save(report.to_json())
    log.info("audit %s summary %s", report_id, json.dumps(report.summary(), sort_keys=True))
    return report


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


class _Audit:
    """One run's reads and checks. Holds only bounded state: groups (≤200), two filters, capped findings."""

    def __init__(
        self, cfg: AuditSettings, limiter: RateLimiter, sleep: Callable[[float], None], *,
        dps: ProvisioningService, registries: DeviceRegistries, journal: Journal,
    ) -> None:
        self.cfg, self.limiter, self.sleep = cfg, limiter, sleep
        self.dps, self.registries, self.journal = dps, registries, journal
        self.found = FindingCollector(limit=cfg.max_findings_per_check)
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.groups: list[EnrollmentGroup] = []
        self.known_groups: dict[str, GroupSnapshot] = {}  # earlier runs + journal: finds deleted groups
        self.revoked = BloomFilter(cfg.filter_capacity, cfg.filter_error_rate)  # revoked registration IDs

    # -- plumbing --------------------------------------------------------------------------------------------
    def spend(self, key: str, ops: int = 1) -> None:
        wait_for(self.limiter, key, ops, self.sleep)

    def metered(self, items: Iterable[T], key: str) -> Iterator[T]:
        """Spend one token per page of ``page_size`` items, before the page is pulled."""
        self.spend(key)
        for n, item in enumerate(items):
            if n and n % self.cfg.page_size == 0:
                self.spend(key)
            yield item

    def guard(self, what: str, fn: Callable[[], None]) -> None:
        """Run one check; an error there is reported and the other checks go on."""
        try:
            fn()
        except UnprovisionError as exc:
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            log.warning("audit check %s failed: %s", what, type(exc).__name__)

    def group_records(self, group_id: str) -> Iterator[RegistrationState]:
        return self.metered(self.dps.iter_group_registrations(group_id, self.cfg.page_size), DPS_KEY)

    def room(self, check: CheckId) -> bool:
        return self.found.counts.get(check.value, 0) < self.cfg.max_findings_per_check

    def load_groups(self, reports: AuditReportStore) -> None:
        self.groups = list(self.metered(self.dps.iter_groups(), DPS_KEY))
        previous = next(iter(reports.iter_reports(limit=1)), None)
        if previous:
            self.known_groups = {g.group_id.lower(): g for g in AuditReport.from_json(previous).groups}

    def snapshots(self) -> tuple[GroupSnapshot, ...]:
        """Present groups, plus deleted ones carried forward so their checks persist until fixed."""
        now = {g.group_id.lower(): GroupSnapshot.of(g) for g in self.groups}
        return (*now.values(), *(s for k, s in self.known_groups.items() if k not in now))

    # -- revocations (journal-driven) ------------------------------------------------------------------------
    def check_revocations(self) -> None:
        """Every completed revocation that is still the latest word on its target must still hold.

        ``iter_events`` may return headers without steps; the full record comes from ``history``, which the
        audit reads anyway to skip revocations superseded by a later event or undone by ``found``.
        """
        by_id = {g.group_id.lower(): g for g in self.groups}
        for header in self.journal.iter_events(status="completed"):
            if header.event_type == "found":
                continue
            rev = self._latest(header.target)
            if rev is None or rev.event_id != header.event_id:
                continue
            self.revoked.add(rev.target.lower())
            if _is_group(rev) and rev.target.lower() not in self.known_groups:
                self.known_groups[rev.target.lower()] = GroupSnapshot(rev.target, "disabled", "x509")
            if rev.dps_steps & _ENROLLMENT_STEPS:
                self.spend(DPS_KEY)
                self.found.add(check_enrollment(rev, self.dps.get_enrollment(rev.target)))
            if rev.dps_steps & _GROUP_STEPS:
                self.found.add(check_group(rev, by_id.get(rev.target.lower())))
            for kind, hub, device_id in rev.hub_devices:
                self._check_device(rev, kind, hub, device_id)
            if rev.group_fanout:
                self._check_fanout(rev)

    def _latest(self, target: str) -> Revocation | None:
        """The revocation in force on ``target``: the newest one, unless a later `found` undid it."""
        for record in self.journal.history(target):
            if record.event_type == "found":
                return None
            rev = revocation_of(record)
            if rev is not None:
                return rev
        return None

    def _check_device(self, rev: Revocation, kind: str, hub: str, device_id: str) -> None:
        try:
            registry = self.registries.for_hub(hub)
        except HubNotConfigured:
            self.notes.append(f"hub {hub} is not configured: {device_id} not checked")
            return
        self.spend(hub)
        self.found.add(check_hub_device(rev, kind, registry.hub, registry.get(device_id)))

    def _check_fanout(self, rev: Revocation) -> None:
        """A group revocation's devices: stream its registration records, point-read each device."""
        deleted = StepKind.GROUP_DEVICES_DELETED.value in rev.group_fanout
        kind = (StepKind.HUB_IDENTITY_DELETED if deleted else StepKind.HUB_IDENTITY_DISABLED).value
        for reg in self.group_records(rev.target):
            if reg.assigned_hub and reg.device_id and self.room(CheckId.HUB_IDENTITY_STILL_ACTIVE):
                self._check_device(rev, kind, reg.assigned_hub, reg.device_id)

    # -- groups: signing certificates, parent chain, orphaned records ---------------------------------------
    def check_groups(self, now: datetime) -> None:
        present = {g.group_id.lower() for g in self.groups}
        for group in self.groups:
            self.found.add(check_signing_certs(group, now, self.cfg.cert_threshold_days))
            self.found.add(check_parent_group(group, False, self.groups))
        for key, snapshot in self.known_groups.items():
            if key in present:
                continue
            if snapshot.certificates:
                self.found.add(check_parent_group(snapshot.as_group(), True, self.groups))
            what = f"orphaned registrations of {snapshot.group_id}"
            self.guard(what, lambda s=snapshot: self._count_orphans(s))  # type: ignore[misc]

    def _count_orphans(self, snapshot: GroupSnapshot) -> None:
        count, sample = 0, list[str]()
        for reg in self.group_records(snapshot.group_id):
            count += 1
            if len(sample) < 5:
                sample.append(reg.registration_id)
        self.found.add(check_orphans(snapshot.group_id, count, sample))

    def check_poison(self, poison: PoisonQueue) -> None:
        count = poison.count()
        sample = [m.message_id for m in poison.peek(5)] if count else []
        self.found.add(check_poison(poison.name, count, sample))

    # -- fleet join: hub devices vs registration records -----------------------------------------------------
    def check_fleet(self) -> None:
        """Hub identities vs DPS registration records, in fixed memory (``unprovision.audit_fleet``)."""
        from unprovision.audit_fleet import check_fleet  # imported here: that module imports this one

        check_fleet(self)


def _is_group(rev: Revocation) -> bool:
    return bool(rev.dps_steps & _GROUP_STEPS or rev.group_fanout)
