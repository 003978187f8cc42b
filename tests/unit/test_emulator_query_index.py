"""The emulator's hub query: ID-indexed answers are exactly what a full scan answers (no I/O).

``run_query`` given a list scans it; given the registry it looks ``deviceId = / IN`` IDs up. Both are run
here on the same registry, page by page, for queries with and without ID conditions.
"""

from __future__ import annotations

from typing import Any

import pytest

from emulator.iothub.query import compile_query, run_query
from emulator.iothub.state import HubState


class CountingState(HubState):
    """A real registry that counts full twin builds (what the index must avoid)."""

    full_scans = 0

    def twins(self) -> list[dict[str, Any]]:
        self.full_scans += 1
        return super().twins()


@pytest.fixture
def state() -> CountingState:
    hub = CountingState("hub-1", "127.0.0.1:1")
    for i in range(30):
        hub.create_or_update(f"d-{i:02d}", {"status": "disabled" if i % 3 == 0 else "enabled"}, None)
    hub.delete_device("d-05", None)
    hub.create_or_update("d-05", {}, None)  # re-created: now last in insertion order
    hub.seed_devices([{"deviceId": "d-07", "tags": {"site": "x"}}])  # replaced in place: keeps its position
    return hub


def pages(source: Any, text: str, size: int) -> list[list[str]]:
    out: list[list[str]] = []
    token: str | None = None
    while True:
        items, token = run_query(source, text, max_items=str(size), continuation=token)
        out.append([twin["deviceId"] for twin in items])
        if token is None:
            return out


QUERIES = [
    "SELECT * FROM devices WHERE deviceId IN ['d-09', 'd-05', 'd-01', 'd-07', 'ghost', 'd-01']",
    "SELECT * FROM devices WHERE deviceId = 'd-05'",
    "SELECT * FROM devices WHERE deviceId = 'ghost'",
    "SELECT * FROM devices WHERE deviceId = 5",
    "SELECT * FROM devices WHERE status = 'disabled' AND deviceId IN ['d-03', 'd-04', 'd-06', 'd-12']",
    "SELECT * FROM devices WHERE deviceId IN ['d-03', 'd-04'] AND deviceId IN ['d-04', 'd-06']",
    "SELECT * FROM devices WHERE tags.site = 'x' AND deviceId IN ['d-07', 'd-08']",
]


@pytest.mark.parametrize("text", QUERIES)
@pytest.mark.parametrize("size", [1, 2, 100])
def test_an_id_query_answers_exactly_as_a_scan_without_building_every_twin(
        state: CountingState, text: str, size: int) -> None:
    scanned = pages(state.twins(), text, size)
    state.full_scans = 0
    indexed = pages(state, text, size)
    assert indexed == scanned
    assert state.full_scans == 0


def test_the_index_keeps_insertion_order_not_the_order_asked(state: CountingState) -> None:
    text = "SELECT * FROM devices WHERE deviceId IN ['d-09', 'd-05', 'd-01', 'd-07']"
    assert pages(state, text, 100) == [["d-01", "d-07", "d-09", "d-05"]]


@pytest.mark.parametrize("text", [
    "SELECT * FROM devices",
    "SELECT * FROM devices WHERE status = 'enabled'",
    "SELECT * FROM devices WHERE deviceId != 'd-01'",
])
def test_queries_without_an_id_condition_still_scan(state: CountingState, text: str) -> None:
    scanned = pages(state.twins(), text, 7)
    state.full_scans = 0
    assert pages(state, text, 7) == scanned
    assert state.full_scans == len(scanned)
    assert compile_query(text).device_ids is None
