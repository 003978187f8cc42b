"""run_audit against the port fakes: create drift, the audit reports exactly it; remediation fixes it.

Revocations are made by the real engine (``unprovision.engine.core.Engine`` with the real planner) so the
journal holds what production would write; drift is then made behind the app's back, as a portal user would.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.audit_memory import (
    InMemoryAuditReportStore,
    InMemoryPoisonQueue,
    InMemorySuppressionStore,
)
from shared.adapters.journal_memory import InMemoryJournal
from shared.audit import CheckId
from shared.audit_report import AuditReport
from shared.certs import parse_pem
from shared.events import parse_event
from shared.model import (
    AttestationType,
    CertificateInfo,
    EnrollmentGroup,
    HubDeviceStatus,
    ProvisioningStatus,
)
from shared.policy import DEFAULT_POLICY
from shared.ports import AuditLeaseRecord, SuppressionRecord
from tests.fakes import (
    FakeClock,
    FakeDeviceRegistries,
    FakeDeviceRegistry,
    FakeProvisioningService,
    InMemoryAuditLease,
    RecordingWorkQueue,
)
from tests.support.certs import make_ca, make_intermediate
from unprovision.audit.requests import AuditService
from unprovision.audit.run import AuditPorts, run_audit
from unprovision.audit.settings import AuditSettings
from unprovision.engine.core import Engine
from unprovision.group.inprocess import GroupWork
from unprovision.throttle import HubBudget, InMemoryRateLimiter

HUB = "hub-a.example.net"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SETTINGS = AuditSettings(filter_capacity=10_000, max_findings_per_check=50)


class Fleet:
    """A small clean fleet: group ``grp`` (devices d1-d3), own enrollment ``own1``, one hub."""

    def __init__(self) -> None:
        self.dps = FakeProvisioningService()
        self.hub = FakeDeviceRegistry(HUB)
        self.registries = FakeDeviceRegistries([self.hub])
        self.journal = InMemoryJournal()
        self.poison = InMemoryPoisonQueue()
        self.reports = InMemoryAuditReportStore()
        self.suppressions = InMemorySuppressionStore()
        self.dps.add_group("grp", attestation=AttestationType.SYMMETRIC_KEY)
        for d in ("d1", "d2", "d3"):
            self.dps.add_registration(d, HUB, group_id="grp")
            self.hub.add_device(d)
        self.dps.add_enrollment("own1", attestation=AttestationType.SYMMETRIC_KEY)
        self.dps.add_registration("own1", HUB)
        self.hub.add_device("own1")

        self.engine = Engine(dps=self.dps, registries=self.registries, journal=self.journal,
                             policy=DEFAULT_POLICY, group_work=GroupWork(),
                             force_sources=frozenset({"admin"}))
        self.hub_limiter = InMemoryRateLimiter({HUB: HubBudget(10_000, 10_000)})

    def apply(self, event: Any) -> Any:
        return self.engine.apply(event)

    def revoke(self, target: str, event_type: str = "lost", event_id: str | None = None) -> None:
        body = {
            "eventId": event_id or f"ev-{target}-{event_type}",
            "type": event_type,
            "registrationId": target,
            "occurredAt": "2026-05-01T00:00:00Z",
            "source": "tracker",
        }
        outcome = self.apply(parse_event(body))
        assert self.journal.get(body["eventId"]).status == "completed", outcome

    def ports(self, **kw: Any) -> AuditPorts:
        return AuditPorts(
            dps=self.dps, registries=self.registries, journal=self.journal, reports=self.reports,
            suppressions=self.suppressions, poison_queues=kw.pop("poison_queues", (self.poison,)),
            hub_limiter=kw.pop("hub_limiter", self.hub_limiter), apply=self.apply,
            settings=kw.pop("settings", SETTINGS), **kw,
        )

    def audit(self, *, remediate: bool = False, now: datetime = NOW, **kw: Any) -> AuditReport:
        return run_audit(self.ports(**kw), now=now, remediate_findings=remediate)


def _found(report: AuditReport) -> set[tuple[str, str]]:
    return {(f.check.value, f.resource) for f in report.findings}


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


def test_a_clean_fleet_with_holding_revocations_has_no_findings(fleet):
    fleet.revoke("own1")
    fleet.revoke("d1")
    report = fleet.audit()
    assert report.findings == ()
    assert report.errors == ()
    assert report.counts == {}
    assert fleet.reports.get(report.report_id)["reportId"] == report.report_id


def test_reenabled_own_enrollment_is_found_remediated_and_then_clean(fleet):
    fleet.revoke("own1")
    fleet.dps.set_enrollment_status("own1", ProvisioningStatus.ENABLED)
    report = fleet.audit(remediate=True)
    assert _found(report) == {("REVOCATION_REVERSED", "own1")}
    [fix] = report.remediations
    assert (fix.original_event_id, fix.status) == ("ev-own1-lost", "completed")
    synthetic = fleet.journal.get(fix.event_id)
    assert (synthetic.source, synthetic.event_type) == ("audit", "lost")
    assert fleet.dps.enrollments["own1"].status == ProvisioningStatus.DISABLED
    assert fleet.audit().findings == ()


def test_deleted_blocking_enrollment_is_found_and_recreated(fleet):
    fleet.revoke("d1")
    assert fleet.dps.enrollments["d1"].is_blocking
    fleet.dps.enrollments.pop("d1")
    report = fleet.audit(remediate=True)
    assert _found(report) == {("BLOCKING_ENROLLMENT_MISSING", "d1")}
    assert report.remediations[0].status == "completed"
    assert fleet.dps.enrollments["d1"].status == ProvisioningStatus.DISABLED
    assert fleet.audit().findings == ()


def test_reenabled_hub_identity_is_found_and_disabled_again(fleet):
    fleet.revoke("d2")
    fleet.hub.enable("d2")
    report = fleet.audit(remediate=True)
    assert _found(report) == {("HUB_IDENTITY_STILL_ACTIVE", f"{HUB}/d2")}
    assert fleet.hub.devices["d2"].status == HubDeviceStatus.DISABLED
    assert fleet.audit().findings == ()


def test_a_found_event_makes_a_reenabled_device_legitimate(fleet):
    fleet.revoke("own1")
    fleet.revoke("own1", event_type="found", event_id="ev-own1-found")
    assert fleet.audit().findings == ()


def test_suppressed_finding_is_listed_apart_and_never_remediated(fleet):
    fleet.revoke("own1")
    fleet.dps.set_enrollment_status("own1", ProvisioningStatus.ENABLED)
    fleet.suppressions.put(
        SuppressionRecord("REVOCATION_REVERSED", "OWN1", "2026-07-01T00:00:00Z", "bench test")
    )
    mutations = fleet.dps.mutation_count()
    report = fleet.audit(remediate=True)
    assert report.findings == ()
    assert [(f.check, s.reason) for f, s in report.suppressed] == [
        (CheckId.REVOCATION_REVERSED, "bench test")
    ]
    assert report.counts == {}
    assert [r.status for r in report.remediations] == []
    assert fleet.dps.mutation_count() == mutations
    assert fleet.dps.enrollments["own1"].status == ProvisioningStatus.ENABLED


def test_expired_suppression_no_longer_applies(fleet):
    fleet.hub.add_device("rogue")
    fleet.suppressions.put(
        SuppressionRecord(
            "HUB_DEVICE_WITHOUT_REGISTRATION", f"{HUB}/rogue", "2026-06-01T11:00:00Z", "expired an hour ago"
        )
    )
    report = fleet.audit()
    assert _found(report) == {("HUB_DEVICE_WITHOUT_REGISTRATION", f"{HUB}/rogue")}
    assert report.suppressed == ()
    assert report.suppressions == ()


def test_hub_device_without_registration_and_registration_without_device(fleet):
    fleet.hub.add_device("rogue")
    fleet.hub.add_device("parked", HubDeviceStatus.DISABLED)  # disabled: harmless, not reported
    fleet.dps.add_registration("d4", HUB, group_id="grp")
    report = fleet.audit()
    assert _found(report) == {
        ("HUB_DEVICE_WITHOUT_REGISTRATION", f"{HUB}/rogue"),
        ("REGISTRATION_WITHOUT_HUB_DEVICE", "d4"),
    }


def test_deleted_hub_identity_of_a_revoked_device_is_not_a_missing_device(fleet):
    fleet.revoke("d3", event_type="retired")
    assert "d3" not in fleet.hub.devices  # the policy deletes on retired
    assert fleet.audit().findings == ()


def test_orphaned_registrations_of_a_deleted_group(fleet):
    fleet.dps.add_group("old", attestation=AttestationType.SYMMETRIC_KEY)
    fleet.dps.add_registration("o1", HUB, group_id="old")
    fleet.hub.add_device("o1")
    assert fleet.audit().findings == ()  # the group is remembered in the report
    fleet.dps.delete_group("old")
    report = fleet.audit()
    assert _found(report) == {("ORPHANED_REGISTRATIONS", "old")}
    assert "1 registration" in report.findings[0].evidence


def test_deleted_group_under_an_enabled_parent_group(fleet):
    root = make_ca("Fleet Root")
    inter = make_intermediate("Fleet Intermediate", root)
    for gid, cert in (("root-group", root), ("inter-group", inter)):
        fleet.dps.groups[gid] = EnrollmentGroup(
            gid, AttestationType.X509, ProvisioningStatus.ENABLED, (parse_pem(cert.pem).info(),)
        )
    assert fleet.audit().findings == ()
    fleet.dps.delete_group("inter-group")
    assert _found(fleet.audit()) == {("REENROLLMENT_VIA_PARENT_GROUP", "inter-group")}


def test_signing_certificates_expiring_and_expired(fleet):
    def cert(days: int) -> CertificateInfo:
        return CertificateInfo("CN=s", "CN=r", not_after=(NOW + timedelta(days=days)).isoformat())

    fleet.dps.groups["grp"] = replace(fleet.dps.groups["grp"], signing_certificates=(cert(5),))
    fleet.dps.groups["x2"] = EnrollmentGroup(
        "x2", AttestationType.X509, ProvisioningStatus.ENABLED, (cert(-1),)
    )
    report = fleet.audit(settings=replace(SETTINGS, cert_threshold_days=7))
    assert _found(report) == {("SIGNING_CERT_EXPIRING", "grp"), ("SIGNING_CERT_EXPIRED", "x2")}


def test_poison_messages_pending(fleet):
    fleet.poison.add("m-1", '{"eventId": "bad"}')
    report = fleet.audit()
    assert _found(report) == {("POISON_MESSAGES_PENDING", "lifecycle-poison")}
    assert report.summary() == {"POISON_MESSAGES_PENDING": {"high": 1}}


def test_reenabled_group_is_reversed(fleet):
    body = {
        "eventId": "ev-grp",
        "type": "compromised",
        "enrollmentGroupId": "grp",
        "occurredAt": "2026-05-01T00:00:00Z",
        "source": "soc",
    }
    fleet.apply(parse_event(body))
    assert fleet.journal.get("ev-grp").status == "completed"
    assert fleet.audit().findings == ()
    fleet.dps.set_group_status("grp", ProvisioningStatus.ENABLED)
    fleet.hub.enable("d1")
    report = fleet.audit(remediate=True)
    assert _found(report) == {("REVOCATION_REVERSED", "grp"), ("HUB_IDENTITY_STILL_ACTIVE", f"{HUB}/d1")}
    assert [r.status for r in report.remediations] == ["completed"]
    assert fleet.audit().findings == ()


def test_findings_are_capped_per_check_with_exact_counts(fleet):
    for i in range(7):
        fleet.hub.add_device(f"rogue-{i}")
    report = fleet.audit(settings=replace(SETTINGS, max_findings_per_check=3))
    assert len(report.findings) == 3
    assert report.counts == {"HUB_DEVICE_WITHOUT_REGISTRATION": 7}
    assert all("not confirmed" not in f.evidence for f in report.findings)  # the listed ones were point-read


def test_hub_page_reads_are_paid_from_the_shared_per_hub_registry_budget(fleet):
    for i in range(250):
        fleet.dps.add_registration(f"m{i}", HUB, group_id="grp")
        fleet.hub.add_device(f"m{i}")
    clock = FakeClock()
    # the app's shared per-hub registry budget: 5 tokens per query page, refilled at 5 a minute
    limiter = InMemoryRateLimiter({HUB: HubBudget(ops_per_minute=5, burst=5)}, clock=clock)
    report = fleet.audit(hub_limiter=limiter, sleep=clock.sleep)
    assert report.findings == ()
    # 254 hub devices in pages of 100: 3 queries, of which the 2nd and 3rd wait a minute each
    assert sum(clock.slept) == pytest.approx(120.0)


def test_a_failing_check_is_reported_and_the_others_still_run(fleet):
    from shared.errors import Transient

    fleet.hub.add_device("rogue")
    fleet.poison.add("m-1")
    fleet.dps.fail_on("get_registration", 1, Transient("503 from DPS"))
    report = fleet.audit()
    assert any(e.startswith("fleet: Transient") for e in report.errors)
    assert ("POISON_MESSAGES_PENDING", "lifecycle-poison") in _found(report)


def _cli(fleet: Fleet, *argv: str, lease: InMemoryAuditLease | None = None) -> tuple[int, str]:
    import io

    from unprovision.cli import build_parser
    from unprovision.commands import audit as command

    service = AuditService(fleet.ports(), lease or InMemoryAuditLease(), RecordingWorkQueue())
    out = io.StringIO()
    args = build_parser().parse_args(["audit", *argv])
    return command.run(args, service=service, now=NOW, out=out), out.getvalue()


def test_cli_suppress_then_audit_reports_it_suppressed_and_lists_it(fleet):
    import json

    fleet.hub.add_device("lab-1")
    code, text = _cli(
        fleet,
        "suppress",
        "HUB_DEVICE_WITHOUT_REGISTRATION",
        f"{HUB}/lab-1",
        "--until",
        "2026-09-30",
        "--reason",
        "QA lab device",
    )
    assert (code, text.strip()) == (
        0,
        f"suppressed HUB_DEVICE_WITHOUT_REGISTRATION {HUB}/lab-1 until 2026-09-30T00:00:00Z",
    )
    code, text = _cli(fleet, "--json")
    doc = json.loads(text)
    assert code == 0
    assert doc["findings"] == []
    assert [s["resource"] for s in doc["suppressed"]] == [f"{HUB}/lab-1"]
    code, text = _cli(fleet, "suppressions")
    assert "QA lab device" in text
    assert "(active)" in text


def test_cli_exit_code_says_findings_remain_and_prints_a_table(fleet):
    fleet.hub.add_device("rogue")
    code, text = _cli(fleet)
    assert code == 4
    assert "HUB_DEVICE_WITHOUT_REGISTRATION" in text
    assert f"{HUB}/rogue" in text


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (("suppress", "NOT_A_CHECK", "x", "--until", "2027-01-01", "--reason", "r"), "unknown check"),
        (("suppress", "POISON_MESSAGES_PENDING", "q", "--until", "2020-01-01", "--reason", "r"), "future"),
        (("suppress", "POISON_MESSAGES_PENDING", "q", "--until", "soon", "--reason", "r"), "not a date"),
        (("suppress", "POISON_MESSAGES_PENDING", "q", "--until", "2027-01-01", "--reason", " "), "reason"),
    ],
)
def test_cli_rejects_bad_suppressions_and_stores_nothing(fleet, capsys, argv, why):
    code, _ = _cli(fleet, *argv)
    assert code == 2
    assert why in capsys.readouterr().err
    assert list(fleet.suppressions.iter_all()) == []


@pytest.mark.parametrize("event_type", ["compromised", "retired"])
def test_a_holding_group_revocation_is_clean_whatever_it_did_to_the_devices(fleet, event_type):
    body = {
        "eventId": "ev-grp",
        "type": event_type,
        "enrollmentGroupId": "grp",
        "occurredAt": "2026-05-01T00:00:00Z",
        "source": "soc",
    }
    fleet.apply(parse_event(body))
    assert fleet.journal.get("ev-grp").status == "completed"
    report = fleet.audit()
    assert report.findings == ()
    assert report.errors == ()


def _event(event_id: str, event_type: str, target: str, **extra: Any) -> Any:
    return parse_event({"eventId": event_id, "type": event_type, "registrationId": target,
                        "occurredAt": "2026-05-01T00:00:00Z", "source": "tracker", **extra})


def test_an_old_unforced_found_that_undid_a_theft_is_flagged_and_re_revoked(fleet):
    # issue #11 item 2 as older code left it: stolen, lost, then a found that completed without force.
    fleet.revoke("own1", event_type="stolen", event_id="ev-stolen")
    fleet.revoke("own1", event_type="lost", event_id="ev-lost")
    journal = fleet.journal
    journal.begin("ev-found", event_type="found", target="own1", source="tracker", correlation_id="c",
                  plan={"eventId": "ev-found", "eventType": "found", "target": "own1", "steps": []})
    journal.finish("ev-found", "completed")
    fleet.dps.set_enrollment_status("own1", ProvisioningStatus.ENABLED)
    fleet.hub.enable("own1")
    report = fleet.audit(remediate=True)
    assert _found(report) == {("ONE_WAY_REVOCATION_UNDONE", "own1"),
                              ("ONE_WAY_REVOCATION_UNDONE", f"{HUB}/own1")}
    assert [(r.original_event_id, r.status) for r in report.remediations] == [("ev-stolen", "completed")]
    assert fleet.dps.enrollments["own1"].status == ProvisioningStatus.DISABLED
    assert fleet.hub.devices["own1"].status == HubDeviceStatus.DISABLED


def test_a_theft_lifted_by_a_completed_forced_found_is_not_flagged(fleet):
    fleet.revoke("own1", event_type="stolen", event_id="ev-stolen")
    outcome = fleet.apply(_event("ev-found", "found", "own1", force=True, source="admin"))
    assert fleet.journal.get("ev-found").status == "completed", outcome
    assert fleet.audit().findings == ()


def test_an_event_left_in_progress_past_the_threshold_is_reported_stuck(fleet):
    fleet.journal.begin("ev-stuck", event_type="lost", target="d1", source="tracker", correlation_id="c",
                        plan={})
    fleet.journal.finish("ev-stuck", "in_progress")
    later = datetime.now(UTC) + timedelta(hours=2)
    report = fleet.audit(now=later)
    assert ("EVENT_STUCK", "ev-stuck") in _found(report)
    assert ("EVENT_STUCK", "ev-stuck") not in _found(fleet.audit(now=datetime.now(UTC)))


def test_every_poison_queue_the_app_owns_is_reported(fleet):
    lifecycle, work = InMemoryPoisonQueue("device-lifecycle-poison"), InMemoryPoisonQueue(
        "device-lifecycle-work-poison")
    work.add("batch-1", '{"eventId": "grp-1"}')
    lifecycle.add("m-1")
    report = fleet.audit(poison_queues=(lifecycle, work))
    assert _found(report) == {("POISON_MESSAGES_PENDING", "device-lifecycle-poison"),
                              ("POISON_MESSAGES_PENDING", "device-lifecycle-work-poison")}


def test_remediation_goes_through_the_apply_the_caller_passes(fleet):
    fleet.revoke("own1")
    fleet.dps.set_enrollment_status("own1", ProvisioningStatus.ENABLED)
    seen: list[Any] = []

    def apply(event: Any) -> Any:
        seen.append(event)
        return fleet.apply(event)

    report = run_audit(replace(fleet.ports(), apply=apply), now=NOW, remediate_findings=True)
    assert [(e.type.value, e.source, e.target) for e in seen] == [("lost", "audit", "own1")]
    assert report.remediations[0].status == "completed"


def test_the_cli_refuses_to_run_beside_another_audit(fleet, capsys):
    lease = InMemoryAuditLease()
    lease.claim(AuditLeaseRecord("20260601T115900Z-0000abcd", "running", False, "2026-06-01T11:59:00Z",
                                 "2026-06-01T13:59:00Z"), "2026-06-01T11:59:00Z")
    code, _ = _cli(fleet, lease=lease)
    assert code == 5
    assert "20260601T115900Z-0000abcd" in capsys.readouterr().err


def test_stolen_found_lost_found_through_the_engine_leaves_the_device_revoked(fleet):
    # issue #11 item 2, end to end on the fakes: the second unforced found must be refused as well.
    fleet.revoke("own1", event_type="stolen", event_id="ev-stolen")
    assert str(fleet.apply(_event("ev-found-1", "found", "own1")).status) == "refused"
    fleet.apply(_event("ev-lost", "lost", "own1"))
    assert str(fleet.apply(_event("ev-found-2", "found", "own1")).status) == "refused"
    assert fleet.dps.enrollments["own1"].status == ProvisioningStatus.DISABLED
    assert fleet.hub.devices["own1"].status == HubDeviceStatus.DISABLED
    assert fleet.audit().findings == ()
