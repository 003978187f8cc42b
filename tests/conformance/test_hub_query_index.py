"""Queries naming device IDs (``deviceId = …`` / ``deviceId IN [...]``) on a big hub, through azure-iot-hub.

The app's bulk disable asks ``SELECT * FROM devices WHERE deviceId IN [...]`` for 100 IDs at a time; the
emulator answers it by looking the IDs up rather than building every twin in the hub, so a 20,000-device
hub answers in milliseconds (it took ~0.4 s per query before). Results keep registry insertion order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.iot.hub.protocol.models import QuerySpecification

HUB_SIZE = 20_000


@pytest.fixture
def big_hub(clean_emulator: Any) -> Iterator[Any]:
    """Hub 1 seeded with HUB_SIZE devices through the admin seed API; emptied again afterwards."""
    devices = [{"deviceId": f"big-{i:05d}", "status": "disabled" if i % 7 == 0 else "enabled"}
               for i in range(HUB_SIZE)]
    clean_emulator.admin("POST", "/seed", json={"devices": {"hub-1": devices}})
    yield clean_emulator.registry_manager(0)
    clean_emulator.reset()  # later tests on the session fixture should not carry 20,000 devices


def id_query(ids: list[str], where: str = "") -> QuerySpecification:
    """``SELECT * FROM devices WHERE [where AND] deviceId IN [...]``; the IDs are the tests' own constants."""
    listed = ", ".join(f"'{d}'" for d in ids)
    return QuerySpecification(query=f"SELECT * FROM devices WHERE {where}deviceId IN [{listed}]")  # noqa: S608


def ids_of(result: Any) -> list[str]:
    return [twin.device_id for twin in result.items]


def test_an_in_query_on_a_hub_of_20000_devices_answers_well_under_a_second(big_hub: Any) -> None:
    wanted = [f"big-{i:05d}" for i in range(HUB_SIZE - 1, 0, -200)]  # 100 IDs, in reverse order
    spec = id_query(wanted)
    big_hub.query_iot_hub(spec, max_item_count=100)  # connection set up, not timed
    started = time.perf_counter()
    result = big_hub.query_iot_hub(spec, max_item_count=100)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"IN query took {elapsed:.3f} s"
    assert ids_of(result) == sorted(wanted)  # registry insertion order, not the order asked
    assert result.continuation_token is None
    twin = result.items[0]
    assert twin.device_etag
    assert twin.status in ("enabled", "disabled")


def test_an_equality_query_finds_one_device_fast_and_a_missing_one_not_at_all(big_hub: Any) -> None:
    started = time.perf_counter()
    one = big_hub.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE deviceId='big-12345'"))
    assert time.perf_counter() - started < 0.5
    assert ids_of(one) == ["big-12345"]
    none = big_hub.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE deviceId = 'nope'"))
    assert ids_of(none) == []


def test_an_indexed_query_keeps_the_other_conditions_and_pages_like_a_scan(big_hub: Any) -> None:
    wanted = [f"big-{i:05d}" for i in range(0, 1400, 7)]  # 200 IDs, all disabled (i % 7 == 0)
    asked = [*wanted[::-1], "big-00001", "ghost"]  # one enabled device, one missing
    spec = id_query(asked, where="status = 'disabled' AND ")
    first = big_hub.query_iot_hub(spec, max_item_count=150)
    assert first.continuation_token
    second = big_hub.query_iot_hub(spec, continuation_token=first.continuation_token, max_item_count=150)
    assert second.continuation_token is None
    assert ids_of(first) + ids_of(second) == wanted
