"""Audit stores and the poison queue on a real Azurite (tables + queues)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.audit_tables import TableAuditLease, TableAuditReportStore, TableSuppressionStore
from shared.adapters.journal_memory import InMemoryJournal
from shared.adapters.poison_queue import StoragePoisonQueue, poison_queue_name
from shared.adapters.queues import StorageQueueSender
from shared.audit import CheckId
from shared.audit_report import AuditReport
from shared.ports import AuditLeaseRecord, SuppressionRecord
from tests.fakes import FakeDeviceRegistries, FakeDeviceRegistry, FakeProvisioningService
from tests.support.azurite_fixtures import unique_prefix
from unprovision.audit.run import AuditPorts, run_audit
from unprovision.audit.settings import AuditSettings
from unprovision.throttle import InMemoryRateLimiter

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _report(report_id: str, started: str, findings: int = 1) -> dict:
    rows = [
        {
            "check": "HUB_DEVICE_WITHOUT_REGISTRATION",
            "resource": f"hub/dev-{i:06d}",
            "evidence": "x" * 200,
            "severity": "medium",
            "action": "look",
            "eventId": None,
            "eventType": None,
        }
        for i in range(findings)
    ]
    return AuditReport.from_json(
        {
            "reportId": report_id,
            "startedAt": started,
            "finishedAt": started,
            "remediate": False,
            "findings": rows,
            "counts": {"HUB_DEVICE_WITHOUT_REGISTRATION": findings},
        }
    ).to_json()


@pytest.fixture
def reports(azurite):
    return TableAuditReportStore.from_connection_string(azurite.connection_string, prefix=unique_prefix())


@pytest.fixture
def suppressions(azurite):
    return TableSuppressionStore.from_connection_string(azurite.connection_string, prefix=unique_prefix())


def test_reports_are_kept_as_a_history_newest_first(reports):
    reports.save(_report("r-old", "2026-05-01T00:00:00Z"))
    reports.save(_report("r-new", "2026-06-01T00:00:00Z"))
    assert [r["reportId"] for r in reports.iter_reports()] == ["r-new", "r-old"]
    assert [r["reportId"] for r in reports.iter_reports(limit=1)] == ["r-new"]
    assert reports.get("r-old")["startedAt"] == "2026-05-01T00:00:00Z"
    assert reports.get("r-missing") is None


def test_a_report_too_big_for_one_entity_keeps_its_counts_and_fewer_findings(reports):
    reports.save(_report("r-big", "2026-06-01T00:00:00Z", findings=4000))  # ~1.3 MB of JSON
    stored = reports.get("r-big")
    assert stored["storedFindingsTruncated"] is True
    assert 0 < len(stored["findings"]) < 4000
    assert stored["counts"] == {"HUB_DEVICE_WITHOUT_REGISTRATION": 4000}


def test_suppressions_replace_by_check_and_resource_and_can_be_deleted(suppressions):
    suppressions.put(
        SuppressionRecord("POISON_MESSAGES_PENDING", "Queue/A#1", "2026-07-01T00:00:00Z", "first")
    )
    suppressions.put(
        SuppressionRecord("POISON_MESSAGES_PENDING", "queue/a#1", "2026-08-01T00:00:00Z", "again")
    )
    suppressions.put(
        SuppressionRecord("ORPHANED_REGISTRATIONS", "old-group", "2026-07-01T00:00:00Z", "later")
    )
    items = sorted(suppressions.iter_all(), key=lambda s: s.check)
    assert [(s.check, s.resource, s.reason) for s in items] == [
        ("ORPHANED_REGISTRATIONS", "old-group", "later"),
        ("POISON_MESSAGES_PENDING", "queue/a#1", "again"),
    ]
    assert suppressions.delete("POISON_MESSAGES_PENDING", "QUEUE/A#1") is True
    assert suppressions.delete("POISON_MESSAGES_PENDING", "QUEUE/A#1") is False
    assert [s.check for s in suppressions.iter_all()] == ["ORPHANED_REGISTRATIONS"]


def test_poison_queue_counts_and_peeks_without_dequeuing(azurite):
    name = poison_queue_name(f"q{uuid.uuid4().hex[:10]}")
    sender = StorageQueueSender(azurite.connection_string, name)
    for i in range(3):
        sender.send({"eventId": f"bad-{i}"})
    poison = StoragePoisonQueue.from_connection_string(azurite.connection_string, name)
    assert poison.count() == 3
    peeked = poison.peek(2)
    assert len(peeked) == 2
    assert '"eventId":"bad-0"' in peeked[0].body
    assert poison.count() == 3  # peeking leaves them there


def test_a_missing_poison_queue_counts_as_empty(azurite):
    poison = StoragePoisonQueue.from_connection_string(azurite.connection_string, "never-created-poison")
    assert poison.count() == 0
    assert poison.peek() == ()


def test_audit_on_table_stores_honours_a_stored_suppression_and_keeps_history(azurite, reports, suppressions):
    hub = FakeDeviceRegistry("hub-a.example.net")
    hub.add_device("rogue")
    hub.add_device("lab-1")
    name = poison_queue_name(f"q{uuid.uuid4().hex[:10]}")
    StorageQueueSender(azurite.connection_string, name).send({"eventId": "bad"})
    poison = StoragePoisonQueue.from_connection_string(azurite.connection_string, name)
    suppressions.put(
        SuppressionRecord(
            "HUB_DEVICE_WITHOUT_REGISTRATION",
            "hub-a.example.net/lab-1",
            "2026-12-31T00:00:00Z",
            "QA lab device",
        )
    )

    def audit(now: datetime = NOW) -> AuditReport:
        ports = AuditPorts(
            dps=FakeProvisioningService(), registries=FakeDeviceRegistries([hub]), journal=InMemoryJournal(),
            reports=reports, suppressions=suppressions, poison_queues=(poison,),
            hub_limiter=InMemoryRateLimiter(), apply=_no_remediation,
            settings=AuditSettings(filter_capacity=1000),
        )
        return run_audit(ports, now=now)

    first = audit()
    assert {(f.check, f.resource) for f in first.findings} == {
        (CheckId.HUB_DEVICE_WITHOUT_REGISTRATION, "hub-a.example.net/rogue"),
        (CheckId.POISON_MESSAGES_PENDING, name),
    }
    assert [f.resource for f, _ in first.suppressed] == ["hub-a.example.net/lab-1"]
    second = audit(NOW + timedelta(hours=1))
    assert [r["reportId"] for r in reports.iter_reports()] == [second.report_id, first.report_id]
    assert AuditReport.from_json(reports.get(first.report_id)) == first


def _no_remediation(event: object) -> object:
    raise AssertionError("no remediation expected")


def _lease(audit_id: str, expires: str = "2026-06-01T14:00:00Z") -> AuditLeaseRecord:
    return AuditLeaseRecord(audit_id, "queued", False, "2026-06-01T12:00:00Z", expires)


def test_the_audit_lease_admits_one_audit_at_a_time_until_released_or_expired(azurite):
    lease = TableAuditLease.from_connection_string(azurite.connection_string, prefix=unique_prefix())
    assert lease.current() is None
    assert lease.claim(_lease("a-1"), "2026-06-01T12:00:00Z").audit_id == "a-1"
    assert lease.claim(_lease("a-2"), "2026-06-01T12:01:00Z").audit_id == "a-1"  # held: the holder is named
    running = AuditLeaseRecord("a-1", "running", False, "2026-06-01T12:02:00Z", "2026-06-01T14:02:00Z")
    assert lease.claim(running, "2026-06-01T12:02:00Z") == running  # the holder moves on
    lease.release("a-2")  # not the holder: nothing happens
    assert lease.current() == running
    lease.release("a-1")
    assert lease.current() is None
    lease.claim(_lease("a-3", expires="2026-06-01T12:10:00Z"), "2026-06-01T12:05:00Z")
    assert lease.claim(_lease("a-4"), "2026-06-01T12:11:00Z").audit_id == "a-4"  # a-3 expired


def test_two_writers_racing_for_a_free_audit_lease_get_one_holder(azurite):
    prefix = unique_prefix()
    one = TableAuditLease.from_connection_string(azurite.connection_string, prefix=prefix)
    two = TableAuditLease.from_connection_string(azurite.connection_string, prefix=prefix)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        holders = list(pool.map(lambda i: (one if i % 2 else two).claim(_lease(f"r-{i}"),
                                                                         "2026-06-01T12:00:00Z").audit_id,
                                range(8)))
    assert len(set(holders)) == 1
