"""Realism knobs through the admin API, observed through the unmodified SDKs (docs/azure-behaviour.md §7, §8).

Throttle windows are compressed (``timeCompression``) so a per-minute budget refills within ~1 s.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from azure.iot.hub.protocol.models import ExportImportDevice, QuerySpecification
from msrest.exceptions import ClientRequestError, HttpOperationError


@pytest.fixture
def rm(clean_emulator: Any) -> Any:
    return clean_emulator.registry_manager(0)


def bulk(rm: Any, prefix: str, count: int) -> Any:
    return rm.bulk_create_or_update_devices(
        [ExportImportDevice(id=f"{prefix}-{i}", import_mode="create") for i in range(count)])


def calls(emu: Any, operation: str, hub: str = "hub-1") -> dict[str, int]:
    return emu.admin("GET", "/counters")["calls"].get(hub, {}).get(operation, {})


def test_bulk_calls_count_per_device_and_post_429_is_not_retried(clean_emulator: Any, rm: Any) -> None:
    clean_emulator.admin("PUT", "/throttle", {"tier": "S1", "units": 1, "timeCompression": 6})
    assert bulk(rm, "a", 60).is_successful is True
    with pytest.raises(HttpOperationError) as exc:
        bulk(rm, "b", 50)  # 60 + 50 > 100 registry operations per (compressed) minute
    assert exc.value.response.status_code == 429
    assert int(exc.value.response.headers["Retry-After"]) >= 1
    assert exc.value.response.headers["iothub-errorcode"] == "ThrottlingException"
    counted = calls(clean_emulator, "POST /devices")
    assert counted == {"200": 60, "429": 50}  # registry operations are counted per device


def test_get_429_with_retry_after_is_retried_by_the_sdk(clean_emulator: Any, rm: Any) -> None:
    clean_emulator.admin("PUT", "/throttle", {"tier": "S1", "units": 1, "timeCompression": 30})
    rm.create_device_with_sas("dev-1", None, None, "enabled")
    bulk(rm, "fill", 99)  # the 2 s window's budget of 100 is now spent
    started = time.monotonic()
    assert rm.get_device("dev-1").device_id == "dev-1"
    assert time.monotonic() - started >= 0.5
    counted = calls(clean_emulator, "GET /devices/{device_id}")
    assert counted.get("429", 0) >= 1
    assert counted.get("200") == 1


def test_query_budget_is_separate_from_registry(clean_emulator: Any, rm: Any) -> None:
    clean_emulator.admin("PUT", "/throttle", {"tier": "S1", "units": 1})
    spec = QuerySpecification(query="SELECT * FROM devices")
    for _ in range(20):
        rm.query_iot_hub(spec)
    with pytest.raises(HttpOperationError) as exc:
        rm.query_iot_hub(spec)
    assert exc.value.response.status_code == 429
    assert rm.create_device_with_sas("still-ok", None, None, "enabled").device_id == "still-ok"


def test_injected_5xx_on_post_surfaces_immediately(clean_emulator: Any, rm: Any) -> None:
    clean_emulator.admin("PUT", "/faults", {"rate5xx": 1.0, "paths": ["^/devices/query$"], "status5xx": 503})
    with pytest.raises(HttpOperationError) as exc:
        rm.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"))
    assert exc.value.response.status_code == 503
    assert rm.get_devices() == []  # other paths unaffected


def test_injected_429_has_retry_after_and_drop_cuts_connection(clean_emulator: Any, rm: Any) -> None:
    clean_emulator.admin("PUT", "/faults", {"rate429": 1.0, "methods": ["POST"], "retryAfter": 2})
    with pytest.raises(HttpOperationError) as exc:
        bulk(rm, "x", 1)
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "2"
    clean_emulator.admin("PUT", "/faults", {"rateDrop": 1.0, "methods": ["POST"]})
    with pytest.raises(ClientRequestError):
        bulk(rm, "y", 1)
    clean_emulator.admin("PUT", "/faults", {})
    assert bulk(rm, "z", 1).is_successful is True


def test_latency_is_added_to_every_call(clean_emulator: Any, rm: Any) -> None:
    clean_emulator.admin("PUT", "/latency", {"latencyMs": 150})
    started = time.monotonic()
    rm.get_devices()
    assert time.monotonic() - started >= 0.15


def test_reset_restores_knobs_and_clears_counters_and_state(clean_emulator: Any, rm: Any) -> None:
    clean_emulator.admin("PUT", "/knobs", {"latencyMs": 500, "tier": "S1", "faults": {"rate5xx": 1.0}})
    clean_emulator.admin("POST", "/reset")
    settings = clean_emulator.admin("GET", "/knobs")
    assert (settings["latencyMs"], settings["tier"], settings["faults"]["rate5xx"]) == (0.0, "off", 0.0)
    assert clean_emulator.admin("GET", "/counters")["calls"] == {}
    assert rm.get_devices() == []


def test_seed_and_state_dump(clean_emulator: Any, rm: Any) -> None:
    devices = [{"deviceId": f"s-{i}", "status": "enabled" if i % 2 else "disabled"} for i in range(500)]
    counts = clean_emulator.admin("POST", "/seed", {
        "devices": {"hub-2": devices},
        "registrations": [{"registrationId": "s-1", "deviceId": "s-1", "assignedHub": "hub-2"}],
    })
    assert counts["devices"] == {"hub-2": 500}
    assert counts["registrations"] == 1
    hub2 = clean_emulator.registry_manager(1)
    assert hub2.get_device_registry_statistics().disabled_device_count == 250
    dump = clean_emulator.admin("GET", "/state")
    assert len(dump["hubs"][1]["devices"]) == 500
    assert dump["dps"]["registrations"][0]["assignedHub"] == clean_emulator.hubs[1]["hostName"]


@pytest.mark.parametrize(("settings", "message"), [
    ({"jobDevicesPerSecond": 0}, "jobDevicesPerSecond must be a finite number > 0; got 0"),
    ({"jobDevicesPerSecond": "fast"}, "jobDevicesPerSecond must be a number > 0; got 'fast'"),
    ({"jobStartSeconds": -1}, "jobStartSeconds must be a finite number >= 0; got -1"),
    ({"jobStartSeconds": True}, "jobStartSeconds must be a number >= 0; got True"),
    ({"timeCompression": 0, "jobStartSeconds": 5}, "timeCompression must be a finite number > 0; got 0"),
])
def test_bad_job_knobs_are_refused_with_400_naming_the_knob_and_change_nothing(
        clean_emulator: Any, settings: dict[str, Any], message: str) -> None:
    before = clean_emulator.admin("GET", "/jobs")
    url = clean_emulator.config["admin"] + "/jobs"
    response = requests.put(url, json=settings, verify=clean_emulator.ca_bundle, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "BadRequest", "message": message}
    assert clean_emulator.admin("GET", "/jobs") == before


def test_job_knobs_are_set_through_the_admin_api_and_reset_to_the_start_up_values(
        clean_emulator: Any) -> None:
    defaults = clean_emulator.admin("GET", "/jobs")
    assert (round(defaults["jobDevicesPerSecond"]), defaults["jobStartSeconds"]) == (278, 10.0)
    changed = clean_emulator.admin("PUT", "/knobs", {"jobDevicesPerSecond": 50, "jobStartSeconds": 0})
    assert (changed["jobDevicesPerSecond"], changed["jobStartSeconds"]) == (50.0, 0.0)
    clean_emulator.admin("POST", "/reset")
    assert clean_emulator.admin("GET", "/jobs") == defaults
