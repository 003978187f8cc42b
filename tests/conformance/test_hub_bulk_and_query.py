"""Bulk registry (``POST /devices``) and twin query paging through azure-iot-hub 2.7.0.

Bulk: every import mode, 200 vs 400 with BulkRegistryOperationResult (partial failures commit the good
entries — the emulator's documented choice), >100 entries → 413, duplicate IDs → 400011 with nothing applied.
Query: ``x-ms-max-item-count`` paging, continuation token until the last page (header absent there),
``x-ms-item-type: twin``, the supported WHERE subset, and 400 for anything else.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.iot.hub.protocol.models import ExportImportDevice, QuerySpecification
from msrest.exceptions import HttpOperationError


@pytest.fixture
def rm(clean_emulator: Any) -> Any:
    return clean_emulator.registry_manager(0)


def entry(device_id: str, mode: str, **extra: Any) -> ExportImportDevice:
    return ExportImportDevice(id=device_id, import_mode=mode, **extra)


def test_bulk_create_many_devices_returns_success(rm: Any) -> None:
    devices = [entry(f"b-{i}", "create", status="enabled") for i in range(50)]
    result = rm.bulk_create_or_update_devices(devices)
    assert result.is_successful is True
    assert result.errors == []
    assert rm.get_device_registry_statistics().total_device_count == 50
    assert rm.get_device("b-7").authentication.symmetric_key.primary_key


def test_bulk_update_disables_and_delete_removes(rm: Any) -> None:
    rm.bulk_create_or_update_devices([entry(f"b-{i}", "create") for i in range(3)])
    result = rm.bulk_create_or_update_devices([
        entry("b-0", "update", status="disabled"),
        entry("b-1", "delete"),
    ])
    assert result.is_successful is True
    assert rm.get_device("b-0").status == "disabled"
    assert {d.device_id for d in rm.get_devices()} == {"b-0", "b-2"}


def test_bulk_partial_failure_is_400_result_and_commits_good_entries(rm: Any) -> None:
    rm.bulk_create_or_update_devices([entry("exists", "create")])
    result = rm.bulk_create_or_update_devices([
        entry("exists", "create"),
        entry("new-one", "create"),
        entry("ghost", "delete"),
    ])
    assert result.is_successful is False
    codes = {(e.device_id, e.error_code) for e in result.errors}
    assert codes == {("exists", "DeviceAlreadyExists"), ("ghost", "DeviceNotFound")}
    assert rm.get_device("new-one").device_id == "new-one"


def test_bulk_if_match_etag_modes_check_device_and_twin_etags(rm: Any) -> None:
    rm.bulk_create_or_update_devices([entry("d", "create")])
    device, twin = rm.get_device("d"), rm.get_twin("d")
    stale = rm.bulk_create_or_update_devices([entry("d", "updateIfMatchETag", e_tag="bm9wZQ==",
                                                    status="disabled")])
    assert [e.error_code for e in stale.errors] == ["PreconditionFailed"]
    fresh = rm.bulk_create_or_update_devices([entry("d", "updateIfMatchETag", e_tag=device.etag,
                                                    status="disabled")])
    assert fresh.is_successful is True
    twin_ok = rm.bulk_create_or_update_devices([entry("d", "updateTwinIfMatchETag", twin_etag=twin.etag,
                                                      tags={"fleet": "north"})])
    assert twin_ok.is_successful is True
    assert rm.get_twin("d").tags == {"fleet": "north"}
    gone = rm.bulk_create_or_update_devices([entry("d", "deleteIfMatchETag", e_tag=device.etag)])
    assert [e.error_code for e in gone.errors] == ["PreconditionFailed"]
    current = rm.get_device("d").etag
    assert rm.bulk_create_or_update_devices([entry("d", "deleteIfMatchETag", e_tag=current)]).is_successful


def test_bulk_update_twin_overwrites_tags(rm: Any) -> None:
    rm.bulk_create_or_update_devices([entry("d", "create", tags={"a": 1})])
    assert rm.get_twin("d").tags == {"a": 1}
    rm.bulk_create_or_update_devices([entry("d", "updateTwin", tags={"b": 2})])
    assert rm.get_twin("d").tags == {"b": 2}


def test_bulk_above_100_devices_is_413_too_many_devices(rm: Any) -> None:
    with pytest.raises(HttpOperationError) as exc:
        rm.bulk_create_or_update_devices([entry(f"b-{i}", "create") for i in range(101)])
    assert exc.value.response.status_code == 413
    assert exc.value.response.headers["iothub-errorcode"] == "TooManyDevices"
    assert rm.get_device_registry_statistics().total_device_count == 0


def test_bulk_duplicate_device_is_rejected_whole(rm: Any) -> None:
    result = rm.bulk_create_or_update_devices([entry("dup", "create"), entry("other", "create"),
                                               entry("dup", "delete")])
    assert result.is_successful is False
    assert [(e.device_id, e.error_code) for e in result.errors] == [("dup", "DeviceDefinedMultipleTimes")]
    assert rm.get_device_registry_statistics().total_device_count == 0


def seed(rm: Any, count: int) -> None:
    rm.bulk_create_or_update_devices([
        entry(f"q-{i:03d}", "create", status="disabled" if i % 3 == 0 else "enabled",
              tags={"site": "north" if i % 2 else "south"})
        for i in range(count)
    ])


def test_query_pages_with_continuation_and_no_token_on_last_page(rm: Any) -> None:
    seed(rm, 25)
    spec = QuerySpecification(query="SELECT * FROM devices")
    seen: list[str] = []
    tokens: list[str | None] = []
    token = None
    while True:
        result = rm.query_iot_hub(spec, token, "10")
        assert result.type == "twin"
        seen.extend(item.device_id for item in result.items)
        tokens.append(result.continuation_token)
        token = result.continuation_token
        if token is None:
            break
    assert seen == [f"q-{i:03d}" for i in range(25)]
    assert [t is None for t in tokens] == [False, False, True]


def test_query_where_subset_filters_by_status_tags_and_in_list(rm: Any) -> None:
    seed(rm, 12)

    def ids(text: str) -> set[str]:
        return {t.device_id for t in rm.query_iot_hub(QuerySpecification(query=text)).items}

    disabled = ids("SELECT * FROM devices WHERE status = 'disabled'")
    assert disabled == {f"q-{i:03d}" for i in range(12) if i % 3 == 0}
    assert ids("select * from devices where tags.site = 'north' AND status = 'enabled'") == {
        f"q-{i:03d}" for i in range(12) if i % 2 and i % 3}
    assert ids("SELECT * FROM devices WHERE deviceId IN ['q-001', 'q-005', 'nope']") == {"q-001", "q-005"}


@pytest.mark.parametrize("text", ["SELECT deviceId FROM devices", "SELECT * FROM devices.modules",
                                  "SELECT * FROM devices WHERE status = 'enabled' OR status = 'disabled'",
                                  "SELECT COUNT() FROM devices"])
def test_query_outside_subset_is_400(rm: Any, text: str) -> None:
    with pytest.raises(HttpOperationError) as exc:
        rm.query_iot_hub(QuerySpecification(query=text))
    assert exc.value.response.status_code == 400
