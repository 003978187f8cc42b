"""The benchmark's symmetric-key group scenario: its summary and verdicts (bench/report.py), from numbers.

A symmetric-key group's bulk path spends two registry units per device (key read + bulk-write entry); the
purge is judged against its own throttle floor, and a purge that starves (issue 11, item 7: devices left
over, or far slower than the budget allows) must be reported as missed, with the numbers that say why.
"""

from __future__ import annotations

from typing import Any

from bench import report
from bench.markdown import render


def side(wall: float, devices: int, units_per_hub: float, *, failed: int = 0,
         http429: int = 0) -> dict[str, Any]:
    hubs = ("hub-1", "hub-2", "hub-3")
    return {
        "wallSeconds": wall, "devices": devices, "failed": failed, "bulkCalls": devices // 100,
        "peakRssMb": 60.0, "requests": {"POST /devices 429": http429, "GET /devices/{id} 200": devices},
        "emulator": {"registryUnitsByHub": dict.fromkeys(hubs, units_per_hub),
                     "units": {h: {"registry": units_per_hub} for h in hubs},
                     "limitsPerMinute": {h: {"registry": 100.0} for h in hubs}},
    }


def run(engine: dict[str, Any], devices: int = 999) -> dict[str, Any]:
    return {"devices": devices, "hubs": 3, "timeCompression": 10.0, "units": 1, "attestation": "symmetricKey",
            "engine": engine}


def test_a_purge_paced_by_the_budget_meets_both_verdicts() -> None:
    # 333 devices per hub x 2 units = 666 units: a floor of 6.66 real minutes, 39.96 s at F = 10
    summary = report.symmetric_summary(run(side(wall=41.0, devices=999, units_per_hub=666.0)))
    engine = summary["engine"]
    assert round(engine["throttleFloorRealSeconds"], 1) == 399.6
    assert round(engine["realOverFloor"], 4) == round((399.6 + 41.0 - 39.96) / 399.6, 4)
    floor, ops = report.symmetric_verdicts(summary)
    assert floor.met, floor.text
    assert "floor 6.7 min on hub-1/registry" in floor.text
    assert ops.met, ops.text
    assert engine["registryOpsPerDevice"] == 2.0


def test_a_starving_purge_is_a_miss_that_says_why() -> None:
    summary = report.symmetric_summary(run(side(wall=400.0, devices=999, units_per_hub=666.0, failed=93,
                                                http429=1500)))
    floor, _ops = report.symmetric_verdicts(summary)
    assert not floor.met
    assert "93 devices were not purged" in floor.text
    assert "1500 429s seen" in floor.text


def test_a_purge_far_above_its_floor_misses_and_a_wasteful_one_misses_the_ops_target() -> None:
    slow = report.symmetric_summary(run(side(wall=120.0, devices=999, units_per_hub=666.0)))
    assert not report.symmetric_verdicts(slow)[0].met
    wasteful = report.symmetric_summary(run(side(wall=41.0, devices=999, units_per_hub=1000.0)))
    assert not report.symmetric_verdicts(wasteful)[1].met


def test_the_report_has_a_symmetric_key_section_only_when_measured() -> None:
    summary = {**report.symmetric_summary(run(side(wall=41.0, devices=999, units_per_hub=666.0))), "raw": {}}
    meta = {"date": "d", "cpus": 2, "python": "3.11", "command": "python -m bench", "timeCompression": 10.0,
            "hubs": 3, "action": "disable", "importJobThreshold": 1000}
    results = {"meta": meta, "verdicts": [], "group": [], "memory": [], "single": {"skipped": "x"}}
    assert "Symmetric-key group purge" not in render(results)
    text = render({**results, "symmetric": [summary]})
    assert "## Symmetric-key group purge" in text
    assert "| 999 | engine (bulk) |" in text
