"""Pure audit checks (shared.audit): facts in, findings out. No I/O, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.audit import (
    CheckId,
    Finding,
    FindingCollector,
    GroupSnapshot,
    Severity,
    active_suppression,
    check_enrollment,
    check_group,
    check_hub_device,
    check_one_way,
    check_orphans,
    check_parent_group,
    check_poison,
    check_signing_certs,
    check_stuck,
    finding,
    one_way_in_force,
    revocation_of,
    synthetic_event_id,
)
from shared.audit_report import AuditReport, Remediation, render_table
from shared.bloom import BloomFilter
from shared.certs import parse_pem
from shared.model import (
    AttestationType,
    CertificateInfo,
    EnrollmentGroup,
    HubDevice,
    HubDeviceStatus,
    IndividualEnrollment,
    ProvisioningStatus,
)
from shared.ports import EventRecord, StepRecord, SuppressionRecord
from tests.support.certs import make_ca, make_intermediate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ENABLED, DISABLED = ProvisioningStatus.ENABLED, ProvisioningStatus.DISABLED


def _record(
    event_type: str, *steps: StepRecord, status: str = "completed", target: str = "dev-1"
) -> EventRecord:
    return EventRecord("ev-1", event_type, target, "tracker", status, "c-1", {}, tuple(steps))


def _step(
    index: int, kind: str, outcome: str = "done", hub: str | None = None, target: str = "dev-1"
) -> StepRecord:
    return StepRecord(index, kind, target, outcome, hub=hub)


def _enrollment(status: ProvisioningStatus, marker: str | None = "ev-1") -> IndividualEnrollment:
    return IndividualEnrollment("dev-1", AttestationType.SYMMETRIC_KEY, status, blocking_marker=marker)


def test_revocation_of_keeps_applied_steps_and_the_last_attempt_of_each():
    rec = _record(
        "lost",
        _step(0, "BlockingEnrollmentCreated", "failed"),
        _step(0, "BlockingEnrollmentCreated"),
        _step(1, "HubIdentityDisabled", "already_done", hub="hub-a"),
        _step(2, "EnrollmentDeleted", "skipped"),
    )
    rev = revocation_of(rec)
    assert rev is not None
    assert rev.dps_steps == {"BlockingEnrollmentCreated"}
    assert rev.hub_devices == (("HubIdentityDisabled", "hub-a", "dev-1"),)


@pytest.mark.parametrize(
    ("event_type", "status"), [("found", "completed"), ("lost", "failed"), ("lost", "refused")]
)
def test_found_and_unfinished_events_are_not_revocations(event_type, status):
    assert revocation_of(_record(event_type, _step(0, "EnrollmentDisabled"), status=status)) is None


def test_a_revocation_whose_steps_all_skipped_is_not_a_revocation():
    assert revocation_of(_record("lost", _step(0, "EnrollmentDisabled", "skipped"))) is None


def test_missing_blocking_enrollment_is_reported_with_its_event():
    rev = revocation_of(_record("stolen", _step(0, "BlockingEnrollmentCreated")))
    assert rev is not None
    [f] = check_enrollment(rev, None)
    assert (f.check, f.resource, f.event_id, f.event_type) == (
        CheckId.BLOCKING_ENROLLMENT_MISSING,
        "dev-1",
        "ev-1",
        "stolen",
    )
    assert f.severity is Severity.CRITICAL


def test_reenabled_enrollment_is_reversed_and_a_disabled_one_holds():
    rev = revocation_of(_record("lost", _step(0, "EnrollmentDisabled")))
    assert rev is not None
    assert [f.check for f in check_enrollment(rev, _enrollment(ENABLED, None))] == [
        CheckId.REVOCATION_REVERSED
    ]
    assert check_enrollment(rev, _enrollment(DISABLED, None)) == []
    assert check_enrollment(rev, None) == []  # own enrollment deleted later: documented as not reported


def test_group_enabled_again_is_reversed():
    rev = revocation_of(_record("compromised", _step(0, "GroupDisabled", target="grp"), target="grp"))
    assert rev is not None
    group = EnrollmentGroup("grp", AttestationType.X509, ENABLED)
    assert [f.resource for f in check_group(rev, group)] == ["grp"]
    assert check_group(rev, EnrollmentGroup("grp", AttestationType.X509, DISABLED)) == []
    assert check_group(rev, None) == []


def test_hub_identity_enabled_or_recreated_is_still_active():
    rev = revocation_of(_record("lost", _step(0, "HubIdentityDeleted", hub="hub-a")))
    assert rev is not None
    back = HubDevice("hub-a", "dev-1", HubDeviceStatus.ENABLED)
    [f] = check_hub_device(rev, "HubIdentityDeleted", "hub-a", back)
    assert f.resource == "hub-a/dev-1"
    assert "re-created" in f.evidence
    assert check_hub_device(rev, "HubIdentityDeleted", "hub-a", None) == []
    off = HubDevice("hub-a", "dev-1", HubDeviceStatus.DISABLED)
    assert check_hub_device(rev, "HubIdentityDisabled", "hub-a", off) == []


def _group_of(cert_pem: str, group_id: str, status: ProvisioningStatus) -> EnrollmentGroup:
    return EnrollmentGroup(group_id, AttestationType.X509, status, (parse_pem(cert_pem).info(),))


def test_deleted_group_under_an_enabled_parent_group_is_high_and_a_disabled_one_low():
    root = make_ca("Audit Root")
    inter = make_intermediate("Audit Intermediate", root)
    parent = _group_of(root.pem, "root-group", ENABLED)
    child = _group_of(inter.pem, "inter-group", DISABLED)
    [gone] = check_parent_group(child, True, [parent])
    assert (gone.check, gone.resource, gone.severity) == (
        CheckId.REENROLLMENT_VIA_PARENT_GROUP,
        "inter-group",
        Severity.HIGH,
    )
    [latent] = check_parent_group(child, False, [parent, child])
    assert latent.severity is Severity.LOW
    assert check_parent_group(child, True, [_group_of(root.pem, "root-group", DISABLED)]) == []
    enabled_child = _group_of(inter.pem, "inter-group", ENABLED)
    assert check_parent_group(enabled_child, False, [parent]) == []


def test_deleted_group_chain_works_from_a_remembered_snapshot_without_pem():
    root = make_ca("Snap Root")
    inter = make_intermediate("Snap Intermediate", root)
    snap = GroupSnapshot.of(_group_of(inter.pem, "inter-group", DISABLED))
    assert all(c.pem is None for c in snap.certificates)
    restored = GroupSnapshot.from_json(snap.to_json()).as_group()
    assert [
        f.resource for f in check_parent_group(restored, True, [_group_of(root.pem, "root", ENABLED)])
    ] == ["inter-group"]


def _cert_group(not_after: datetime, status: ProvisioningStatus = ENABLED) -> EnrollmentGroup:
    info = CertificateInfo("CN=signer", "CN=root", not_after=not_after.isoformat().replace("+00:00", "Z"))
    return EnrollmentGroup("grp", AttestationType.X509, status, (info,))


def test_signing_certificate_expiry_uses_the_given_now_and_threshold():
    assert [f.check for f in check_signing_certs(_cert_group(NOW - timedelta(seconds=1)), NOW, 30)] == [
        CheckId.SIGNING_CERT_EXPIRED
    ]
    assert [f.check for f in check_signing_certs(_cert_group(NOW + timedelta(days=10)), NOW, 30)] == [
        CheckId.SIGNING_CERT_EXPIRING
    ]
    assert check_signing_certs(_cert_group(NOW + timedelta(days=31)), NOW, 30) == []
    assert check_signing_certs(_cert_group(NOW - timedelta(days=1), DISABLED), NOW, 30) == []


def test_poison_and_orphans_report_counts_and_nothing_when_empty():
    [p] = check_poison("lifecycle-poison", 3, ["m1", "m2"])
    assert "3 message(s)" in p.evidence
    assert check_poison("lifecycle-poison", 0, []) == []
    [o] = check_orphans("old-group", 7, ["a", "b"])
    assert (o.resource, "7 registration" in o.evidence) == ("old-group", True)
    assert check_orphans("old-group", 0, []) == []


def test_suppression_matches_check_and_resource_case_insensitively_until_it_expires():
    f = finding(CheckId.HUB_DEVICE_WITHOUT_REGISTRATION, "hub-a/Dev-1", "x")
    s = SuppressionRecord("HUB_DEVICE_WITHOUT_REGISTRATION", "HUB-A/dev-1", "2026-06-02T00:00:00Z", "lab")
    assert active_suppression(f, [s], NOW) == s
    assert active_suppression(f, [s], NOW + timedelta(days=1)) is None
    other = SuppressionRecord("POISON_MESSAGES_PENDING", "hub-a/dev-1", "2027-01-01T00:00:00Z", "x")
    assert active_suppression(f, [other], NOW) is None


def test_synthetic_event_ids_are_stable_per_run_and_new_per_run():
    f = finding(CheckId.REVOCATION_REVERSED, "dev-1", "x")
    assert synthetic_event_id("r1", f) == synthetic_event_id("r1", f)
    assert synthetic_event_id("r1", f) != synthetic_event_id("r2", f)


def test_bloom_filter_never_forgets_and_rarely_lies():
    bloom = BloomFilter(capacity=2000, error_rate=0.01)
    keys = [f"hub/dev-{i}" for i in range(2000)]
    for k in keys:
        bloom.add(k)
    assert all(k in bloom for k in keys)
    false_hits = sum(f"other-{i}" in bloom for i in range(2000))
    assert false_hits < 100  # ~1 % expected


def test_collector_caps_details_but_counts_everything():
    c = FindingCollector(limit=2)
    c.add(finding(CheckId.HUB_DEVICE_WITHOUT_REGISTRATION, f"h/d{i}", "x") for i in range(5))
    assert len(c.findings) == 2
    assert c.counts == {"HUB_DEVICE_WITHOUT_REGISTRATION": 5}


def test_report_round_trips_through_json_and_renders_a_table():
    f = finding(CheckId.REVOCATION_REVERSED, "dev-1", "enabled again", event=None)
    s = SuppressionRecord("POISON_MESSAGES_PENDING", "q", "2027-01-01T00:00:00Z", "known")
    sf = finding(CheckId.POISON_MESSAGES_PENDING, "q", "2 waiting")
    report = AuditReport(
        "r1",
        "2026-06-01T12:00:00Z",
        "2026-06-01T12:00:01Z",
        True,
        (f,),
        ((sf, s),),
        (s,),
        (Remediation("e2", "e1", "dev-1", "completed", ("REVOCATION_REVERSED",)),),
        {"REVOCATION_REVERSED": 1},
    )
    again = AuditReport.from_json(report.to_json())
    assert again == report
    assert report.summary() == {"REVOCATION_REVERSED": {"critical": 1}}
    table = render_table(report)
    assert "REVOCATION_REVERSED" in table
    assert "Suppressed:" in table
    assert "Remediations:" in table


def test_summary_counts_low_severity_parent_group_findings_apart():
    low = Finding(CheckId.REENROLLMENT_VIA_PARENT_GROUP, "g", "x", Severity.LOW, "keep")
    report = AuditReport("r", "t", "t", False, (low,), counts={"REENROLLMENT_VIA_PARENT_GROUP": 1})
    assert report.summary() == {"REENROLLMENT_VIA_PARENT_GROUP": {"low": 1}}


def _found_record(event_id: str, *, lifts: str | None, status: str = "completed") -> EventRecord:
    params = {"liftsOneWay": lifts} if lifts else {}
    plan = {"eventId": event_id, "eventType": "found", "target": "dev-1",
            "steps": [{"kind": "EnrollmentReenabled", "target": "dev-1", "reason": "r", "params": params}]}
    return EventRecord(event_id, "found", "dev-1", "ops", status, "c", plan, ())


def _theft(status: str = "completed") -> EventRecord:
    return replace(_record("stolen", _step(0, "EnrollmentDisabled"), _step(1, "HubIdentityDisabled",
                                                                           hub="hub-a"), status=status),
                   event_id="ev-stolen")


def test_a_theft_stays_in_force_after_a_later_lost_and_an_unforced_found():
    history = [_found_record("ev-f", lifts=None), _record("lost", status="completed"), _theft()]
    rev = one_way_in_force(history)
    assert rev is not None
    assert rev.event_id == "ev-stolen"


def test_a_theft_still_in_progress_is_one_way_too():
    rev = one_way_in_force([_theft(status="in_progress")])
    assert rev is not None
    assert rev.dps_steps == {"EnrollmentDisabled"}


@pytest.mark.parametrize(("lifts", "status"), [("ev-stolen", "completed")])
def test_a_completed_forced_found_lifts_the_theft(lifts, status):
    assert one_way_in_force([_found_record("ev-f", lifts=lifts, status=status), _theft()]) is None


def test_a_forced_found_that_did_not_complete_does_not_lift_the_theft():
    assert one_way_in_force([_found_record("ev-f", lifts="ev-stolen", status="failed"), _theft()]) is not None


def test_a_refused_theft_is_not_one_way():
    assert one_way_in_force([_theft(status="refused")]) is None


def test_check_one_way_flags_an_enabled_enrollment_and_an_enabled_hub_identity():
    rev = one_way_in_force([_theft()])
    assert rev is not None
    own = IndividualEnrollment("dev-1", AttestationType.TPM, ENABLED)
    devices = [HubDevice("hub-a", "dev-1", HubDeviceStatus.ENABLED)]
    found = check_one_way(rev, own, devices)
    assert {(f.check, f.resource) for f in found} == {
        (CheckId.ONE_WAY_REVOCATION_UNDONE, "dev-1"), (CheckId.ONE_WAY_REVOCATION_UNDONE, "hub-a/dev-1")}
    assert all(f.severity is Severity.CRITICAL and f.event_id == "ev-stolen" for f in found)
    disabled = IndividualEnrollment("dev-1", AttestationType.TPM, DISABLED)
    assert check_one_way(rev, disabled, [HubDevice("hub-a", "dev-1", HubDeviceStatus.DISABLED)]) == []


def test_an_unfinished_event_is_stuck_only_past_the_threshold():
    record = replace(_record("lost", status="in_progress"), updated_at="2026-06-01T10:30:00Z")
    [f] = check_stuck(record, NOW, timedelta(hours=1))
    assert (f.check, f.resource, f.severity) == (CheckId.EVENT_STUCK, "ev-1", Severity.HIGH)
    assert check_stuck(record, NOW, timedelta(hours=2)) == []
    assert check_stuck(replace(record, status="completed"), NOW, timedelta(hours=1)) == []
