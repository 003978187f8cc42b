"""Security: keys on the HTTP API, wrong service credentials, injection through IDs, secrets in logs.

* HTTP routes other than the OpenAPI document answer 401 without a key or with a wrong one (header or
  ``?code=``), through the real host process.
* A wrong SAS key for DPS or a hub ends the event ``failed`` with ``upstream_auth_failed`` after at most a
  couple of 401s at the emulator: authentication errors are not retried.
* IDs built to break out of a query or a URL path are rejected by the event contract (field + reason), and the
  adapters' query builders never let one reach another device.
* Nothing that looks like a secret (policy keys, SAS signatures, connection strings, the Azurite key, the
  host's function keys) appears in any log: in-process logging captured at DEBUG, and the host's output.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from emulator.testing import EmulatorHandle
from shared.adapters.dps import DpsProvisioningService
from shared.adapters.iothub import HubRegistries
from shared.errors import NotFound, Permanent, Rejected
from shared.events import parse_event
from tests.soak.checks import find_secrets, fleet_state, secret_values
from tests.soak.conftest import AppConfig, make_services
from tests.soak.hostproc import FUNCTION_KEY, MASTER_KEY, HostProcess
from tests.soak.settle import progress, queue, send_all, wait_settled
from tests.soak.soakfleet import event_body, mixed_events, seed_fleet
from unprovision.service import HandledOutcome, handle_event_body

INJECTION = ("dev'1", "x' OR '1'='1", "dev 1", "dev;1", "dev'--", "dev/1", "../dev1", "dev%271", "dev\\1",
             "dev\"1", "dev#1", "dev?x=1", "dev\u02bc1", "dev\u04301", "dev\uff071", "dev\u00a01", "dev\n1")
HUB_LEGAL = frozenset({"dev%271", "dev?x=1"})  # only documented IoT Hub device ID characters
ID_FIELDS = ("registrationId", "enrollmentGroupId", "deviceId")


def _body(field: str, value: str) -> dict[str, Any]:
    body: dict[str, Any] = {"eventId": "sec-1", "type": "lost", "occurredAt": "2026-01-05T10:00:00Z",
                            "source": "security"}
    if field == "deviceId":
        body["registrationId"] = "dev-1"
    body[field] = value
    return body


@pytest.mark.parametrize(("field", "value"), [
    (f, v) for f in ID_FIELDS for v in INJECTION if not (f == "deviceId" and v in HUB_LEGAL)])
def test_event_contract_rejects_ids_that_could_inject_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_event(_body(field, value))
    fields = {e.field: e.reason for e in caught.value.errors}
    assert field in fields, fields
    assert "may contain only" in fields[field] or "must" in fields[field]


def test_legal_ids_that_look_suspicious_stay_accepted() -> None:
    """``--`` only matters next to a quote, and quotes are refused; DPS allows ``dev--1``. ``% ? =`` are in
    the documented IoT Hub device ID set: ``dev%271`` and ``dev?x=1`` are real device IDs, percent-encoded in
    URL paths and quoted in queries (the adapter test shows ``%27`` never becomes a quote)."""
    assert parse_event(_body("registrationId", "dev--1")).registration_id == "dev--1"
    for value in HUB_LEGAL:
        assert parse_event(_body("deviceId", value)).device_id == value


def _query_statuses(counters: dict[str, Any]) -> set[str]:
    return {status for ops in counters["calls"].values() for op, statuses in ops.items()
            if "query" in op for status in statuses}


def test_adapters_never_let_an_injected_id_reach_another_device(clean_emulator: EmulatorHandle) -> None:
    devices = seed_fleet(clean_emulator, 3, "victim")
    victim = devices[0].registration_id
    hostile = [f"{victim}' OR deviceId = '{devices[1].registration_id}", f"nobody', '{victim}", f"{victim};",
               f"{victim} ", f"{victim}/../{devices[2].registration_id}", f"../{victim}", f"{victim}%27",
               f"{victim}\u02bc", f"{victim}#", f"{victim}?x=1", f"{victim}'--"]
    dps = DpsProvisioningService.from_connection_string(clean_emulator.dps_connection_string)
    hub = HubRegistries({h["hostName"]: h["connectionString"] for h in clean_emulator.hubs}).for_hub(
        clean_emulator.hubs[0]["hostName"])
    for device_id in hostile:
        result = hub.bulk_disable([device_id, "also-missing"])
        assert result.changed == ()
        assert set(result.failed) == {device_id, "also-missing"}
        assert hub.get(device_id) is None
        with pytest.raises(NotFound):
            hub.disable(device_id)
        _assert_nothing_deleted(hub, device_id)
        assert dps.get_enrollment(device_id) is None
        assert dps.get_registration(device_id) is None
        assert list(dps.iter_group_registrations(device_id)) == []
    state = fleet_state(clean_emulator)
    assert {state.identity(d.registration_id) for d in devices} == {"enabled"}
    assert {state.enrollment(d.registration_id) for d in devices} == {"enabled"}
    # a quote in the query text would be a 400 from the emulator's query parser: every query was well formed
    assert _query_statuses(clean_emulator.admin("GET", "/counters")) <= {"200"}


def _assert_nothing_deleted(hub: Any, device_id: str) -> None:
    """The hub refuses an invalid ID in a bulk body as a whole (400): a clear Permanent error, or nothing."""
    try:
        result = hub.bulk_delete([device_id])
    except Permanent as exc:
        assert "rejected" in str(exc)  # noqa: PT017 - carries no status: hub_bulk.py raises it without one
        return
    assert result.changed == ()


def _wrong_key(connection_string: str) -> str:
    parts = dict(p.split("=", 1) for p in connection_string.split(";"))
    parts["SharedAccessKey"] = base64.b64encode(uuid.uuid4().bytes * 2).decode()
    return ";".join(f"{k}={v}" for k, v in parts.items())


def _calls_with(counters: dict[str, Any], service: str, status: str) -> int:
    return sum(int(s.get(status, 0)) for s in counters["calls"].get(service, {}).values())


@pytest.mark.parametrize("target", ["dps", "hub-1"])
def test_wrong_sas_key_fails_clearly_without_a_retry_storm(
    target: str, clean_emulator: EmulatorHandle, app_config: AppConfig,
) -> None:
    device = seed_fleet(clean_emulator, 2, "authdev")[0]  # index 0 is on hub-1
    values = dict(app_config.values)
    if target == "dps":
        values["DPS_CONNECTION_STRING"] = _wrong_key(clean_emulator.dps_connection_string)
    else:
        hubs = {h["hostName"]: _wrong_key(h["connectionString"]) if h["name"] == target
                else h["connectionString"] for h in clean_emulator.hubs}
        values["IOTHUB_CONNECTIONS"] = json.dumps(hubs)
    services = make_services(app_config, **values)
    outcome = handle_event_body(event_body("auth-1", "lost", device.registration_id), services)
    assert outcome.status == "failed"
    reasons = [outcome.error or "", *(s.error or "" for s in outcome.steps)]
    assert any("auth" in reason.lower() for reason in reasons), reasons
    if isinstance(outcome, HandledOutcome):
        assert outcome.code == "upstream_auth_failed"
        assert outcome.http == 502
    counters = clean_emulator.admin("GET", "/counters")
    assert 1 <= _calls_with(counters, target, "401") <= 2, counters["calls"].get(target)
    assert services.journal.get("auth-1").status == "failed"  # recorded, not lost


@pytest.mark.soak
def test_http_api_answers_401_without_a_key_or_with_a_wrong_one(host_process: HostProcess) -> None:
    host_process.start()
    base = host_process.base_url
    routes = [("POST", "/unprovision"), ("GET", "/unprovision/evt-1"), ("POST", "/audit")]
    for method, route in routes:
        for headers, params in [({}, {}), ({"x-functions-key": "wrong"}, {}), ({}, {"code": "wrong"}),
                                ({"x-functions-key": FUNCTION_KEY[:-1]}, {})]:
            answer = requests.request(method, base + route, headers=headers, params=params, timeout=30,
                                      data=b"{}")
            assert answer.status_code == 401, (method, route, headers.keys(), params.keys())
        ok = requests.request(method, base + route, headers={"x-functions-key": FUNCTION_KEY}, timeout=60,
                              data=b"{}")
        assert ok.status_code != 401
    assert requests.get(base + "/openapi.json", timeout=30).status_code == 200  # anonymous on purpose


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Everything at DEBUG, the SDKs' loggers included; levels restored afterwards."""
    names = ("azure", "msrest", "urllib3", "requests", "unprovision", "shared", "devhost")
    saved = {name: logging.getLogger(name).level for name in names}
    caplog.set_level(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.soak
def test_no_secret_appears_in_any_log_during_a_run_with_failures(
    clean_emulator: EmulatorHandle, app_config: AppConfig, host_process: HostProcess,
    caplog: pytest.LogCaptureFixture, debug_logging: None,
) -> None:
    secrets = secret_values(clean_emulator, [FUNCTION_KEY, MASTER_KEY])
    devices = seed_fleet(clean_emulator, 40, "logs")
    expected = mixed_events(devices, 40, seed=11, run="logs")
    clean_emulator.admin("PUT", "/faults", json={"rate5xx": 0.1, "rate429": 0.1, "rateDrop": 0.02,
                                                  "retryAfter": 1})
    # in-process: the app's services with one wrong key each, plus a normal run under faults
    for target in ("DPS_CONNECTION_STRING", "IOTHUB_CONNECTIONS"):
        values = dict(app_config.values)
        values[target] = (_wrong_key(values[target]) if target.startswith("DPS") else
                          values[target].replace("SharedAccessKey=", "SharedAccessKey=AAAA"))
        handle_event_body(event_body(f"logs-{target}", "stolen", devices[-1].registration_id),
                          make_services(app_config, **values))
    services = make_services(app_config)
    for exp in expected[:10]:
        try:
            handle_event_body(exp.body, services)
        except Exception as exc:  # noqa: BLE001 - retryable errors under faults are expected here
            logging.getLogger("soak").warning("retryable: %s", exc)
    # the host process: queue events under faults, HTTP with right and wrong keys (in header and ?code=)
    host_process.start()
    send_all(queue(app_config.storage, app_config.lifecycle_queue), expected[10:])
    client_log = logging.getLogger("urllib3")
    client_log.setLevel(logging.WARNING)  # the TEST's client would log its own ?code= URL: not the app's log
    for params, headers in [({"code": FUNCTION_KEY}, {}), ({"code": "wrong"}, {}),
                            ({}, {"x-functions-key": FUNCTION_KEY})]:
        requests.post(host_process.base_url + "/unprovision", params=params, headers=headers, timeout=60,
                      data=expected[-1].body.encode())
        requests.get(host_process.base_url + "/unprovision/logs-1", params=params, headers=headers,
                     timeout=60)
    client_log.setLevel(logging.DEBUG)
    poison = queue(app_config.storage, app_config.lifecycle_queue + "-poison")
    wait_settled(lambda: progress(app_config.storage, app_config.prefix, services.journal, poison,
                                  expected[10:]), timeout=90)
    clean_emulator.admin("PUT", "/faults", json={})
    host_process.stop()
    in_process = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}"
                           for r in caplog.records)
    assert len(caplog.records) > 50, "DEBUG capture is on: the run must have logged"
    assert find_secrets(in_process, secrets) == []
    host_log = host_process.output()
    assert "lifecycle message" in host_log
    assert find_secrets(host_log, secrets) == []


def test_secret_scanner_flags_keys_signatures_and_connection_strings(clean_emulator: EmulatorHandle) -> None:
    """The scan above is only worth something if it sees secrets: feed it each shape once."""
    values = secret_values(clean_emulator)
    key = values[-1]
    assert find_secrets(f"token expired for key {key}", values)
    assert find_secrets(clean_emulator.dps_connection_string.replace(key, "x"), [])
    assert find_secrets("Authorization: SharedAccessSignature sr=h&sig=abc%2B&se=1&skn=p", [])
    assert find_secrets("DefaultEndpointsProtocol=http;AccountName=a;AccountKey=Zm9v;", [])
    assert find_secrets("lifecycle message 1 (attempt 1): event evt-1 completed", values) == []
