"""Audits over HTTP: 202 + status route, one at a time (a lease), run from the audit queue (issue #11, 14)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from shared.adapters.audit_memory import InMemoryAuditReportStore, InMemorySuppressionStore
from shared.adapters.journal_memory import InMemoryJournal
from shared.errors import Rejected, Transient
from tests.fakes import (
    FakeDeviceRegistries,
    FakeDeviceRegistry,
    FakeProvisioningService,
    InMemoryAuditLease,
    RecordingWorkQueue,
)
from unprovision.audit.requests import (
    AuditService,
    audit_status,
    check_audit_id,
    request_audit,
    run_exclusive,
    run_requested_audit,
)
from unprovision.audit.run import AuditPorts
from unprovision.audit.settings import AuditSettings
from unprovision.throttle import InMemoryRateLimiter
from unprovision.triggers import audit as trigger

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _never(event: Any) -> Any:
    raise AssertionError("no remediation expected")


def make_service() -> AuditService:
    hub = FakeDeviceRegistry("hub-a.example.net")
    ports = AuditPorts(
        dps=FakeProvisioningService(), registries=FakeDeviceRegistries([hub]), journal=InMemoryJournal(),
        reports=InMemoryAuditReportStore(), suppressions=InMemorySuppressionStore(), poison_queues=(),
        hub_limiter=InMemoryRateLimiter(), apply=_never, settings=AuditSettings(filter_capacity=1000),
    )
    return AuditService(ports, InMemoryAuditLease(), RecordingWorkQueue())


@pytest.fixture
def service() -> AuditService:
    return make_service()


def sent(service: AuditService) -> list[Any]:
    queue = service.requests
    assert isinstance(queue, RecordingWorkQueue)
    return list(queue.messages)


def test_a_request_is_queued_not_run(service):
    answer = request_audit(service, remediate=True, now=NOW)
    assert answer.accepted
    assert sent(service) == [{"auditId": answer.audit_id, "remediate": True}]
    assert audit_status(service, answer.audit_id).state == "queued"
    assert list(service.ports.reports.iter_reports()) == []


def test_a_second_request_while_one_is_queued_is_refused_naming_it(service):
    first = request_audit(service, remediate=False, now=NOW)
    second = request_audit(service, remediate=False, now=NOW + timedelta(seconds=1))
    assert (second.accepted, second.audit_id, second.state) == (False, first.audit_id, "queued")
    assert len(sent(service)) == 1


def test_the_queued_audit_runs_under_its_id_then_frees_the_lease(service):
    answer = request_audit(service, remediate=False, now=NOW)
    report = run_requested_audit(service, json.dumps(sent(service)[0]), now=NOW)
    assert report is not None
    assert report.report_id == answer.audit_id
    status = audit_status(service, answer.audit_id)
    assert status.state == "completed"
    assert status.report is not None
    assert service.lease.current() is None
    assert request_audit(service, remediate=False, now=NOW).accepted


def test_a_message_for_an_audit_that_does_not_hold_the_lease_is_not_run(service):
    holder = request_audit(service, remediate=False, now=NOW)
    stray = {"auditId": "20260601T110000Z-00000000", "remediate": False}
    assert run_requested_audit(service, json.dumps(stray), now=NOW) is None
    assert service.lease.current().audit_id == holder.audit_id  # type: ignore[union-attr]


def test_an_audit_that_crashed_stops_blocking_once_its_lease_expires(service):
    stuck = request_audit(service, remediate=False, now=NOW)
    later = NOW + service.lease_ttl + timedelta(seconds=1)
    fresh = request_audit(service, remediate=False, now=later)
    assert fresh.accepted
    assert fresh.audit_id != stuck.audit_id


def test_a_request_whose_message_cannot_be_sent_leaves_no_lease(service):
    class Failing(RecordingWorkQueue):
        def send(self, message: Any, *, delay: float = 0.0) -> None:
            raise Transient("queue down")

    failing = replace(service, requests=Failing())
    with pytest.raises(Transient):
        request_audit(failing, remediate=False, now=NOW)
    assert service.lease.current() is None


def test_the_lease_is_freed_when_the_audit_fails(service, monkeypatch):
    def boom(*args: Any, **kw: Any) -> Any:
        raise Transient("DPS down")

    monkeypatch.setattr("unprovision.audit.requests.run_audit", boom)
    with pytest.raises(Transient):
        run_exclusive(service, "20260601T120000Z-0000abcd", remediate=False, now=NOW)
    assert service.lease.current() is None


BAD_REMEDIATE = '{"auditId": "20260601T120000Z-0000abcd", "remediate": "yes"}'


@pytest.mark.parametrize("body", ["not json", '{"auditId": "../x"}', BAD_REMEDIATE])
def test_a_malformed_audit_message_is_rejected(service, body):
    with pytest.raises(Rejected):
        run_requested_audit(service, body, now=NOW)


# --- the HTTP routes ---------------------------------------------------------------------------------------


@pytest.fixture
def routes(service: AuditService, monkeypatch: pytest.MonkeyPatch) -> AuditService:
    monkeypatch.setattr(trigger, "_service", lambda: service)
    return service


def post(query: str = "") -> func.HttpRequest:
    return func.HttpRequest("POST", f"http://127.0.0.1:7071/api/audit{query}", body=b"")


def get(audit_id: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"http://127.0.0.1:7071/api/audit/{audit_id}", body=b"",
                            route_params={"auditId": audit_id})


def test_post_answers_202_with_the_status_route_and_a_second_post_409_naming_the_first(routes):
    first = trigger.audit_request(post("?remediate=false"))
    assert first.status_code == 202
    audit_id = json.loads(first.get_body())["auditId"]
    assert first.headers["Location"] == f"http://127.0.0.1:7071/api/audit/{audit_id}"
    second = trigger.audit_request(post())
    assert second.status_code == 409
    assert json.loads(second.get_body())["auditId"] == audit_id
    assert second.headers["Location"] == first.headers["Location"]


@pytest.mark.parametrize("query", ["?remediate=yes", "?Remediate=true", "?remediate=true&remediate=false"])
def test_post_refuses_a_malformed_or_unknown_query_parameter(routes, query):
    assert trigger.audit_request(post(query)).status_code == 400
    assert sent(routes) == []


def test_status_route_answers_202_while_queued_then_200_with_the_report(routes):
    audit_id = json.loads(trigger.audit_request(post()).get_body())["auditId"]
    assert trigger.audit_status_route(get(audit_id)).status_code == 202
    trigger.audit_queue(func.QueueMessage(body=json.dumps(sent(routes)[0]).encode()))
    done = trigger.audit_status_route(get(audit_id))
    assert done.status_code == 200
    assert json.loads(done.get_body())["report"]["reportId"] == audit_id


def test_status_route_404_for_an_unknown_audit_and_400_for_a_malformed_id(routes):
    assert trigger.audit_status_route(get("20260601T120000Z-0000abcd")).status_code == 404
    assert trigger.audit_status_route(get("..")).status_code == 400


ARABIC_INDIC_DATE = "".join(chr(0x0660 + int(d)) for d in "20260601")


@pytest.mark.parametrize("audit_id", ["20260601T120000Z-0000abcd\n", f"{ARABIC_INDIC_DATE}T120000Z-0000abcd",
                                      ""])
def test_an_audit_id_is_exactly_the_ascii_form_it_was_issued_in(audit_id):
    with pytest.raises(Rejected):
        check_audit_id(audit_id)
