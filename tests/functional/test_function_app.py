"""The function app's functions, called with the real trigger types, wired to the emulator and Azurite.

Services come from ``build_services(from_emulator(...))`` (real SDK adapters, real Table journal); each test
gets its own tables and queue names. Outcome messages go through the real ``ServiceBusOutcomeSender`` to a
queue on the emulator's Service Bus stand-in and are read back with the SDK (no fake at that boundary).
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from shared.adapters.notifier import ServiceBusOutcomeSender
from shared.adapters.queues import queue_client
from shared.adapters.servicebus_connect import client_from_connection_string
from shared.adapters.settings import from_emulator
from shared.errors import Transient
from shared.retry import retries_off
from tests.functional.fleet import Fleet, payload
from tests.support.azurite_fixtures import unique_prefix
from unprovision import wiring
from unprovision.outcomes import classify

Functions = dict[str, Callable[..., Any]]


class RecordingSender:
    """The real outcome sender, to a queue of its own on the emulator's Service Bus stand-in; ``sent`` reads
    what arrived there with the SDK (each message once, completed)."""

    def __init__(self, service_bus: dict[str, Any]) -> None:
        self._conn, self._ca = service_bus["connectionString"], service_bus["caBundle"]
        self.queue = f"outcomes-{uuid.uuid4().hex[:8]}"
        self._real = ServiceBusOutcomeSender(self._conn, self.queue)
        self._received: list[dict[str, Any]] = []

    def send(self, body: str, *, message_id: str, correlation_id: str | None) -> None:
        self._real.send(body, message_id=message_id, correlation_id=correlation_id)

    @property
    def sent(self) -> list[dict[str, Any]]:
        with client_from_connection_string(self._conn, ca_bundle=self._ca) as client, \
                client.get_queue_receiver(self.queue) as receiver:
            while batch := receiver.receive_messages(max_message_count=50, max_wait_time=1):
                for message in batch:
                    self._received.append({"body": json.loads(str(message)), "message_id": message.message_id,
                                           "correlation_id": message.correlation_id})
                    receiver.complete_message(message)
        return list(self._received)


def load_app() -> Any:
    """A fresh import of function_app (a FunctionApp indexes once per instance)."""
    module = importlib.import_module("function_app")
    return importlib.reload(module)


def functions_of(module: Any) -> Functions:
    return {f.get_function_name(): f.get_user_function() for f in module.app.get_functions()}


@pytest.fixture
def sender(clean_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> RecordingSender:
    monkeypatch.setenv("SERVICEBUS_CA_BUNDLE", clean_emulator.config["serviceBus"]["caBundle"])
    return RecordingSender(clean_emulator.config["serviceBus"])


@pytest.fixture
def app_services(clean_emulator: Any, azurite: Any, tmp_path: Path,
                 sender: RecordingSender) -> Iterator[wiring.Services]:
    config_path = tmp_path / "emulator.json"
    config_path.write_text(json.dumps(clean_emulator.config), encoding="utf-8")
    suffix = uuid.uuid4().hex[:8]
    base = {"LIFECYCLE_QUEUE": f"lc-{suffix}", "WORK_QUEUE": f"wk-{suffix}"}
    settings = from_emulator(config_path, azurite.connection_string, base=base)
    services = wiring.build_services(settings, table_prefix=unique_prefix(), outcome_sender=sender,
                                     environ={"AzureWebJobsStorage": azurite.connection_string})
    wiring.install_services(services)
    yield services
    wiring.reset_services()


@pytest.fixture
def fns() -> Functions:
    return functions_of(load_app())


@pytest.fixture
def fleet(clean_emulator: Any) -> Fleet:
    return Fleet(clean_emulator.config)


def queue_message(body: str, dequeue_count: int = 1) -> QueueMessage:
    return QueueMessage(id=uuid.uuid4().hex, body=body.encode(), dequeue_count=dequeue_count,
                        pop_receipt="receipt")


def post(body: str, route: str = "unprovision", **params: str) -> func.HttpRequest:
    return func.HttpRequest("POST", f"http://127.0.0.1:7071/api/{route}", params=params, body=body.encode())


def json_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def test_valid_queue_message_revokes_the_device_and_journals_completion(
        app_services: wiring.Services, fns: Functions, fleet: Fleet, sender: RecordingSender) -> None:
    device = fleet.individual("meter-lost")
    assert fns["lifecycle_queue"](queue_message(payload("lost-individual.json"))) is None
    record = app_services.journal.get("fa-lost-1")
    assert record is not None
    assert record.status == "completed"
    assert fleet.hub_status(device) == "disabled"
    assert fleet.registration(device) in ("disabled", "unauthorized")
    published = [m["body"] for m in sender.sent]
    assert [(m["eventId"], m["status"]) for m in published] == [("fa-lost-1", "completed")]


def test_malformed_message_is_journaled_with_its_errors_and_acknowledged(
        app_services: wiring.Services, fns: Functions) -> None:
    body = payload("invalid-event.json")
    assert fns["lifecycle_queue"](queue_message(body)) is None  # returns normally: not retried
    rejections = list(app_services.journal.iter_rejections(event_id="fa-invalid-1"))  # type: ignore[attr-defined]
    assert len(rejections) == 1
    fields = {e["field"] for e in rejections[0].errors}
    assert {"type", "occurredAt", "registrationID"} <= fields
    assert json.loads(rejections[0].body) == json.loads(body)
    assert app_services.journal.get("fa-invalid-1") is None  # a rejection claims no eventId


def test_transient_dps_failure_raises_so_the_host_retries(
        app_services: wiring.Services, fns: Functions, fleet: Fleet, clean_emulator: Any) -> None:
    device = fleet.individual("meter-lost")
    clean_emulator.admin("PUT", "faults", {"rate5xx": 1.0, "services": ["dps"]})
    with retries_off(), pytest.raises(Transient) as raised:
        fns["lifecycle_queue"](queue_message(payload("lost-individual.json"), dequeue_count=2))
    clean_emulator.admin("PUT", "faults", {})
    assert classify(raised.value).retry
    record = app_services.journal.get("fa-lost-1")
    assert record is None or record.status not in ("completed", "failed")
    assert fleet.hub_status(device) == "enabled"


def test_http_dry_run_returns_the_plan_and_changes_nothing(
        app_services: wiring.Services, fns: Functions, fleet: Fleet) -> None:
    device = fleet.individual("meter-sold")
    response = fns["unprovision"](post(payload("sold-individual.json"), dryRun="true"))
    assert response.status_code == 200
    body = json_of(response)
    assert body["status"] == "dry_run"
    assert [s["kind"] for s in body["plan"]["steps"]] == ["EnrollmentDeleted", "HubIdentityDeleted"]
    assert app_services.journal.get("fa-sold-1") is None
    assert fleet.hub_status(device) == "enabled"
    assert fleet.registration(device) == "assigned"


def test_http_invalid_event_answers_400_with_every_field_error(
        app_services: wiring.Services, fns: Functions) -> None:
    response = fns["unprovision"](post(payload("invalid-event.json")))
    assert response.status_code == 400
    body = json_of(response)
    assert body["error"] == "invalid event"
    assert {"type", "occurredAt", "registrationID"} <= {e["field"] for e in body["errors"]}
    assert all(set(e) == {"field", "reason"} for e in body["errors"])


def test_http_post_applies_then_get_status_answers_200_and_unknown_404(
        app_services: wiring.Services, fns: Functions, fleet: Fleet) -> None:
    device = fleet.individual("meter-moved")
    response = fns["unprovision"](post(payload("moved-individual.json")))
    assert response.status_code == 200, response.get_body()
    assert json_of(response)["status"] == "completed"
    assert fleet.hub_status(device) is None  # moved: identity deleted
    assert fleet.registration(device) == "unauthorized"  # enrollment deleted
    get = func.HttpRequest("GET", "http://127.0.0.1/api/unprovision/fa-moved-1", body=b"",
                           route_params={"eventId": "fa-moved-1"})
    status = fns["unprovision_status"](get)
    assert status.status_code == 200
    doc = json_of(status)
    assert doc["status"] == "completed"
    assert doc["type"] == "moved"
    assert [s["outcome"] for s in doc["steps"]] == ["done", "done"]
    unknown = func.HttpRequest("GET", "http://127.0.0.1/api/unprovision/nope", body=b"",
                               route_params={"eventId": "nope"})
    assert fns["unprovision_status"](unknown).status_code == 404


def drain_work_queue(services: wiring.Services, fns: Functions) -> int:
    """Feed every message waiting in the work queue to the work-queue function, as the host would."""
    client = queue_client(wiring.storage_connection_string(services.settings, {}) or "",
                          services.settings.work_queue)
    handled = 0
    for message in client.receive_messages(max_messages=32):
        fns["work_queue"](queue_message(str(message.content), int(message.dequeue_count or 1)))
        client.delete_message(message)
        handled += 1
    return handled


def test_group_event_answers_202_until_its_batches_are_applied(
        app_services: wiring.Services, fns: Functions, fleet: Fleet, sender: RecordingSender) -> None:
    members = fleet.group_members("line-a", 3)
    response = fns["unprovision"](post(payload("compromised-group.json")))
    assert response.status_code == 202, response.get_body()
    assert response.headers["Location"] == "http://127.0.0.1:7071/api/unprovision/fa-compromised-1"
    assert json_of(response)["status"] == "in_progress"
    assert drain_work_queue(app_services, fns) >= 1
    record = app_services.journal.get("fa-compromised-1")
    assert record is not None
    assert record.status == "completed"
    assert [fleet.hub_status(m) for m in members] == ["disabled"] * 3
    assert all(fleet.registration(m) != "assigned" for m in members)
    published = [(m["body"]["eventId"], m["body"]["status"]) for m in sender.sent]
    assert ("fa-compromised-1", "completed") in published


def test_malformed_work_batch_is_journaled_and_acknowledged(
        app_services: wiring.Services, fns: Functions) -> None:
    assert fns["work_queue"](queue_message(payload("invalid-work-batch.json"))) is None
    rejections = list(app_services.journal.iter_rejections(event_id="fa-compromised-1"))  # type: ignore[attr-defined]
    assert {"hub", "action", "deviceIds"} <= {e["field"] for e in rejections[0].errors}


def test_timer_runs_the_audit_and_stores_its_report(app_services: wiring.Services, fns: Functions) -> None:
    assert list(app_services.reports.iter_reports(limit=1)) == []
    fns["audit_timer"](TimerRequest(past_due=False))
    reports = list(app_services.reports.iter_reports(limit=5))
    assert len(reports) == 1
    assert reports[0]["remediate"] is False


def test_http_audit_is_queued_with_a_status_route_that_gives_the_report_once_run(
        app_services: wiring.Services, fns: Functions) -> None:
    accepted = fns["audit_request"](post("", route="audit"))
    assert accepted.status_code == 202
    audit_id = json_of(accepted)["auditId"]
    assert accepted.headers["Location"].endswith(f"/api/audit/{audit_id}")
    assert fns["audit_request"](post("", route="audit")).status_code == 409  # one audit at a time
    status = func.HttpRequest("GET", f"http://127.0.0.1:7071/api/audit/{audit_id}", body=b"",
                              route_params={"auditId": audit_id})
    assert fns["audit_status"](status).status_code == 202
    fns["audit_queue"](queue_message(json.dumps({"auditId": audit_id, "remediate": False})))
    done = fns["audit_status"](status)
    assert done.status_code == 200
    assert app_services.reports.get(audit_id) is not None


def test_service_bus_trigger_exists_only_with_its_connection_setting(
        app_services: wiring.Services, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVICEBUS_CONNECTION", raising=False)
    assert "lifecycle_servicebus" not in functions_of(load_app())
    monkeypatch.setenv("SERVICEBUS_CONNECTION", "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=k;SharedAccessKey=x")
    with_sb = functions_of(load_app())
    device = fleet.individual("meter-lost")
    message = ServiceBusMessage(body=payload("lost-individual.json").encode(), application_properties={},
                                message_id="m-1", user_properties={}, delivery_count=1)
    assert with_sb["lifecycle_servicebus"](message) is None
    assert fleet.hub_status(device) == "disabled"


def test_openapi_document_lists_exactly_the_registered_http_routes(fns: Functions) -> None:
    document = json_of(fns["openapi"](func.HttpRequest("GET", "http://127.0.0.1/api/openapi.json", body=b"")))
    registered: set[tuple[str, str]] = set()
    for f in load_app().app.get_functions():
        trigger = f.get_trigger()
        if trigger.get_binding_name() == "httpTrigger":
            methods = [str(getattr(m, "value", m)).lower() for m in trigger.methods]
            registered |= {("/" + trigger.route, m) for m in methods}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == registered
    schema = json.loads((Path(__file__).parents[2] / "schemas/lifecycle-event.schema.json").read_text())
    assert document["components"]["schemas"]["LifecycleEvent"] == schema


def test_http_refused_event_answers_409_and_is_journaled_as_refused(
        app_services: wiring.Services, fns: Functions, fleet: Fleet) -> None:
    device = fleet.individual("meter-lost")  # never lost: `found` has nothing to undo
    response = fns["unprovision"](post(payload("found-after-lost.json")))
    assert response.status_code == 409, response.get_body()
    assert json_of(response)["status"] == "refused"
    record = app_services.journal.get("fa-found-1")
    assert record is not None
    assert record.status == "refused"
    assert fleet.hub_status(device) == "enabled"
