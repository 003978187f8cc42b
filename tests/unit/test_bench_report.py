"""Report logic of the benchmark: extrapolation, compressed → real time, ratios, verdict texts, markdown."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.markdown import render
from bench.run import BenchOptions, assemble


def side(wall: float, devices: int, units_per_hub: float, **extra: Any) -> dict[str, Any]:
    return {"wallSeconds": wall, "devices": devices, "peakRssMb": 70.0, "failed": 0,
            "emulator": {"registryUnitsByHub": {"hub-1": units_per_hub, "hub-2": units_per_hub / 2}},
            "requests": extra.get("requests", {})}


def test_ratio_handles_zero_denominators() -> None:
    assert report.ratio(10, 4) == 2.5
    assert report.ratio(1, 0) == math.inf
    assert math.isnan(report.ratio(0, 0))


def test_extrapolation_scales_a_sample_linearly_and_rejects_an_empty_one() -> None:
    assert report.extrapolate(12.0, 1000, 10000) == 120.0
    with pytest.raises(ValueError, match="sample"):
        report.extrapolate(1.0, 0, 10)


def test_throttle_floor_uses_the_busiest_hub() -> None:
    assert report.throttle_floor_seconds({"a": 3334.0, "b": 100.0}, 100.0) == pytest.approx(2000.4)


def test_real_time_scales_only_the_throttle_paced_part() -> None:
    # floor 600 s real = 60 s compressed at F=10; the 5 s beyond the floor carry over unscaled
    assert report.real_seconds(65.0, 600.0, 10.0) == pytest.approx(605.0)
    # a client-bound run shorter than the compressed floor still needs the full real floor
    assert report.real_seconds(30.0, 600.0, 10.0) == pytest.approx(600.0)
    assert report.throttle_share(65.0, 600.0, 10.0) == pytest.approx(60 / 65)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert report.percentile(values, 50) == 50.0
    assert report.percentile(values, 95) == 95.0
    assert math.isnan(report.percentile([], 95))


def test_request_counters_are_summed_by_status_and_by_operation() -> None:
    counts = {"GET /devices/{id} 200": 5, "GET /devices/{id} 429": 2, "POST /devices 429": 1}
    assert report.count_status(counts, "429") == 3
    assert report.count_operation(counts, "GET /devices/{id}") == 7


def test_group_summary_extrapolates_the_sampled_baseline_and_converts_both_sides() -> None:
    run = {"devices": 10000, "timeCompression": 10.0, "units": 1,
           "engine": side(200.0, 10000, 3334.0), "naive": side(40.0, 1000, 667.0)}
    summary = report.group_summary(run)
    naive, engine = summary["naive"], summary["engine"]
    assert (naive["sampled"], engine["sampled"]) == (True, False)
    assert naive["wallSeconds"] == pytest.approx(400.0)
    assert naive["registryOpsPerDevice"] == pytest.approx((667 + 333.5) / 1000)
    assert engine["throttleFloorRealSeconds"] == pytest.approx(2000.4)
    assert summary["speedupReal"] == pytest.approx(naive["realSeconds"] / engine["realSeconds"])


def test_a_missed_speedup_says_by_how_much_and_why_from_the_numbers() -> None:
    run = {"devices": 10000, "timeCompression": 10.0,
           "engine": side(200.0, 10000, 6000.0), "naive": side(40.0, 1000, 1200.0)}
    verdict = report.speedup_verdict(report.group_summary(run), report.Targets())
    assert not verdict.met
    assert "vs target ≥ 50x" in verdict.text
    assert "engine spent 0.90 throttled registry ops/device" in verdict.text  # (6000 + 3000) / 10000
    assert "baseline 1.80" in verdict.text  # (1200 + 600) / 1000 sampled devices
    assert "0 import jobs" in verdict.text


def test_ops_verdicts_add_the_import_job_target_only_above_the_threshold() -> None:
    small = report.group_summary({"devices": 500, "timeCompression": 10.0,
                                  "engine": side(10.0, 500, 300.0), "naive": side(10.0, 500, 600.0)})
    big = report.group_summary({"devices": 5000, "timeCompression": 10.0,
                                "engine": side(10.0, 5000, 3000.0), "naive": side(10.0, 500, 600.0)})
    targets = report.Targets(import_job_threshold=1000)
    assert len(report.ops_verdicts(small, targets)) == 1
    bulk, job = report.ops_verdicts(big, targets)
    assert (bulk.met, job.met) == (True, False)
    assert "a factor of 45" in job.text  # 0.9 ops/device vs 0.02


def test_memory_and_single_event_verdicts_follow_the_measurements() -> None:
    targets = report.Targets()
    assert report.memory_verdict({"devices": 1000, "peakRssMb": 80.0},
                                 {"devices": 100000, "peakRssMb": 95.0}, targets).met
    grew = report.memory_verdict({"devices": 1000, "peakRssMb": 80.0},
                                 {"devices": 100000, "peakRssMb": 200.0}, targets)
    assert not grew.met
    assert "120 MB" in grew.text
    trips, p95 = report.single_verdicts({"roundTripsPerEvent": 8.0, "latencyMs": 20.0, "p95Seconds": 0.4},
                                        targets)
    assert (trips.met, p95.met) == (False, True)
    slow = report.single_verdicts({"roundTripsPerEvent": 5.0, "latencyMs": 20.0, "p95Seconds": 0.7},
                                  targets)[1]
    assert "0.100 s of injected latency" in slow.text


def test_assembled_results_render_to_markdown_with_every_section(tmp_path: Path) -> None:
    raw = {"group": [{"devices": 1000, "timeCompression": 10.0, "units": 1,
                      "engine": side(20.0, 1000, 334.0, requests={"POST /devices 200": 12}),
                      "naive": side(40.0, 1000, 667.0, requests={"GET /devices/{id} 200": 1000})}],
           "memory": [{"devices": 1000, "peakRssMb": 70.0, "baselineRssMb": 23.0, "wallSeconds": 1.0,
                       "bulkCalls": 12, "failed": 0, "purged": 1000},
                      {"devices": 10000, "peakRssMb": 72.0, "baselineRssMb": 23.0, "wallSeconds": 9.0,
                       "bulkCalls": 102, "failed": 0, "purged": 10000}],
           "single": {"skipped": "not run in this test"}}
    results = assemble(raw, BenchOptions(out=tmp_path))
    text = render(results)
    for section in ("## Group purge", "## Memory", "Not measured: not run in this test"):
        assert section in text
    assert "`POST /devices 200`: 12" in text
    assert results["verdicts"][0]["name"].startswith("group purge speed-up")
    assert any(v["name"].startswith("peak RSS growth") and v["met"] for v in results["verdicts"])
