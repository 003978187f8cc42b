"""IoT Hub registry conformance: the unmodified azure-iot-hub 2.7.0 client against the emulator.

Covers docs/azure-behaviour.md §4.2/§4.4/§4.5: PUT 200 / DELETE 204, generated keys, 409/404/412 with the
``iothub-errorcode`` header and the classic error body, If-Match forms, get_devices top, twins, statistics.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from azure.iot.hub.protocol.models import Device, Twin
from msrest.exceptions import HttpOperationError

from emulator import sas


@pytest.fixture
def rm(clean_emulator: Any) -> Any:
    return clean_emulator.registry_manager(0)


def error_of(exc: pytest.ExceptionInfo[HttpOperationError]) -> tuple[int, str, dict[str, Any]]:
    response = exc.value.response
    return response.status_code, response.headers.get("iothub-errorcode"), response.json()


def test_create_without_keys_generates_sas_keys_and_first_etag(rm: Any) -> None:
    device = rm.create_device_with_sas("dev-1", None, None, "enabled")
    assert device.device_id == "dev-1"
    assert device.status == "enabled"
    assert device.authentication.type == "sas"
    keys = device.authentication.symmetric_key
    assert keys.primary_key
    assert keys.secondary_key
    assert keys.primary_key != keys.secondary_key
    assert device.etag == "MA=="


def test_create_existing_device_is_409_device_already_exists(rm: Any) -> None:
    rm.create_device_with_sas("dev-1", None, None, "enabled")
    with pytest.raises(HttpOperationError) as exc:
        rm.create_device_with_sas("dev-1", None, None, "enabled")
    status, code, body = error_of(exc)
    assert (status, code) == (409, "DeviceAlreadyExists")
    assert body["Message"].startswith("ErrorCode:DeviceAlreadyExists;")
    assert body["ExceptionMessage"].startswith("Tracking ID:")


def test_update_with_current_etag_changes_status_and_etag(rm: Any) -> None:
    created = rm.create_device_with_sas("dev-1", None, None, "enabled")
    keys = created.authentication.symmetric_key
    updated = rm.update_device_with_sas(
        "dev-1", created.etag, keys.primary_key, keys.secondary_key, "disabled")
    assert updated.status == "disabled"
    assert updated.etag == "MQ=="
    assert updated.authentication.symmetric_key.primary_key == keys.primary_key
    assert rm.get_device("dev-1").status == "disabled"


def test_update_with_stale_etag_is_412_precondition_failed(rm: Any) -> None:
    created = rm.create_device_with_sas("dev-1", None, None, "enabled")
    rm.update_device_with_sas("dev-1", created.etag, None, None, "disabled")
    with pytest.raises(HttpOperationError) as exc:
        rm.update_device_with_sas("dev-1", created.etag, None, None, "enabled")
    assert error_of(exc)[:2] == (412, "PreconditionFailed")


@pytest.mark.parametrize("if_match", ["*", '"*"', "MA==", '"MA=="'])
def test_if_match_accepts_star_and_quoted_or_unquoted_etags(rm: Any, if_match: str) -> None:
    created = rm.create_device_with_sas("dev-1", None, None, "enabled")
    created.status = "disabled"
    updated = rm.protocol.devices.create_or_update_identity("dev-1", created, if_match)
    assert updated.status == "disabled"


def test_read_modify_write_keeps_auth_edge_and_scope(rm: Any) -> None:
    device = Device(device_id="edge-1", status="enabled", capabilities={"iotEdge": True},
                    device_scope="ms-azure-iot-edge://edge-1-123")
    rm.protocol.devices.create_or_update_identity("edge-1", device)
    current = rm.get_device("edge-1")
    current.status = "disabled"
    rm.protocol.devices.create_or_update_identity("edge-1", current, f'"{current.etag}"')
    after = rm.get_device("edge-1")
    assert after.status == "disabled"
    assert after.capabilities.iot_edge is True
    assert after.device_scope == "ms-azure-iot-edge://edge-1-123"
    assert after.authentication.symmetric_key.primary_key == current.authentication.symmetric_key.primary_key


def test_update_of_missing_device_is_404(rm: Any) -> None:
    with pytest.raises(HttpOperationError) as exc:
        rm.update_device_with_sas("ghost", "MA==", None, None, "disabled")
    assert error_of(exc)[:2] == (404, "DeviceNotFound")


def test_delete_is_204_then_get_and_delete_are_404(rm: Any) -> None:
    rm.create_device_with_sas("dev-1", None, None, "enabled")
    assert rm.delete_device("dev-1") is None  # the SDK accepts only 204
    with pytest.raises(HttpOperationError) as exc:
        rm.get_device("dev-1")
    assert error_of(exc)[:2] == (404, "DeviceNotFound")
    with pytest.raises(HttpOperationError) as exc:
        rm.delete_device("dev-1")
    status, code, body = error_of(exc)
    assert (status, code) == (404, "DeviceNotFound")
    assert body["Message"].startswith("ErrorCode:DeviceNotFound;")


def test_delete_with_stale_etag_is_412_and_keeps_device(rm: Any) -> None:
    created = rm.create_device_with_sas("dev-1", None, None, "enabled")
    rm.update_device_with_sas("dev-1", created.etag, None, None, "disabled")
    with pytest.raises(HttpOperationError) as exc:
        rm.delete_device("dev-1", etag=created.etag)
    assert error_of(exc)[:2] == (412, "PreconditionFailed")
    assert rm.get_device("dev-1").device_id == "dev-1"


def test_x509_devices_keep_thumbprints_and_ca_type(rm: Any) -> None:
    thumb = "A" * 40
    self_signed = rm.create_device_with_x509("x-1", thumb, None, "enabled")
    assert self_signed.authentication.type == "selfSigned"
    assert self_signed.authentication.x509_thumbprint.primary_thumbprint == thumb
    ca = rm.create_device_with_certificate_authority("x-2", "enabled")
    assert ca.authentication.type == "certificateAuthority"


def test_invalid_device_id_is_400(rm: Any) -> None:
    with pytest.raises(HttpOperationError) as exc:
        rm.create_device_with_sas("bad#id", None, None, "enabled")
    assert error_of(exc)[:2] == (400, "ArgumentInvalid")


def test_device_ids_are_case_sensitive(rm: Any) -> None:
    rm.create_device_with_sas("Dev-1", None, None, "enabled")
    rm.create_device_with_sas("dev-1", None, None, "disabled")
    assert {d.device_id for d in rm.get_devices()} == {"Dev-1", "dev-1"}


def test_get_devices_honours_top(rm: Any) -> None:
    for i in range(5):
        rm.create_device_with_sas(f"dev-{i}", None, None, "enabled")
    assert len(rm.get_devices(3)) == 3
    assert len(rm.get_devices()) == 5


def test_hubs_are_isolated(clean_emulator: Any) -> None:
    clean_emulator.registry_manager(0).create_device_with_sas("only-on-1", None, None, "enabled")
    with pytest.raises(HttpOperationError):
        clean_emulator.registry_manager(1).get_device("only-on-1")


def test_statistics_count_enabled_and_disabled(rm: Any) -> None:
    rm.create_device_with_sas("a", None, None, "enabled")
    rm.create_device_with_sas("b", None, None, "disabled")
    stats = rm.get_device_registry_statistics()
    assert (stats.total_device_count, stats.enabled_device_count, stats.disabled_device_count) == (2, 1, 1)
    assert rm.get_service_statistics().connected_device_count == 0


def test_twin_patch_merges_and_replace_overwrites_with_etags(rm: Any) -> None:
    rm.create_device_with_sas("dev-1", None, None, "enabled")
    twin = rm.get_twin("dev-1")
    assert twin.status == "enabled"
    assert twin.tags == {}
    patched = rm.update_twin("dev-1", Twin(tags={"site": "a", "floor": 1}), twin.etag)
    assert patched.tags == {"site": "a", "floor": 1}
    assert patched.etag != twin.etag
    merged = rm.update_twin("dev-1", Twin(tags={"floor": None, "room": "x"}))
    assert merged.tags == {"site": "a", "room": "x"}
    replaced = rm.replace_twin("dev-1", Twin(tags={"only": True}))
    assert replaced.tags == {"only": True}
    with pytest.raises(HttpOperationError) as exc:
        rm.update_twin("dev-1", Twin(tags={"x": 1}), twin.etag)
    assert error_of(exc)[:2] == (412, "PreconditionFailed")


def test_twin_is_deleted_with_the_identity(rm: Any) -> None:
    rm.create_device_with_sas("dev-1", None, None, "enabled")
    rm.delete_device("dev-1")
    with pytest.raises(HttpOperationError) as exc:
        rm.get_twin("dev-1")
    assert error_of(exc)[0] == 404


def test_json_responses_carry_charset_content_type(clean_emulator: Any) -> None:
    hub = clean_emulator.hubs[0]
    key = hub["connectionString"].split("SharedAccessKey=")[1]
    token = sas.make_token(hub["hostName"], key, policy="iothubowner")
    url = f"https://{hub['hostName']}/statistics/devices"
    response = requests.get(url, params={"api-version": "2021-04-12"}, headers={"Authorization": token},
                            verify=clean_emulator.ca_bundle, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
