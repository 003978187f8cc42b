"""Report logic of the benchmark: extrapolation, compressed → real time, ratios, verdict texts, markdown."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench import jobmodel, report, wirecount
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
    assert "below the import-job threshold" not in verdict.text  # 10,000 on one hub: the path was not used


def test_a_speedup_missed_below_the_threshold_says_the_bulk_path_was_the_design() -> None:
    run = {"devices": 1000, "hubs": 3, "timeCompression": 10.0,
           "engine": side(20.0, 1000, 334.0), "naive": side(40.0, 1000, 667.0)}
    verdict = report.speedup_verdict(report.group_summary(run), report.Targets())
    assert "(at most 334 devices per hub, below the import-job threshold of 1,000)" in verdict.text


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
    assert "speed-up, bulk path vs naive" not in text  # no bulk-only side measured here
    assert results["verdicts"][0]["name"].startswith("group purge speed-up")
    assert any(v["name"].startswith("peak RSS growth") and v["met"] for v in results["verdicts"])


S1_LIMITS = {"hub-1": {"registry": 100.0, "jobs": 100.0, "query": 20.0},
             "hub-2": {"registry": 100.0, "jobs": 100.0, "query": 20.0}, "dps": {"dpsService": 1000.0}}


def bucket_side(wall: float, devices: int, units: dict[str, dict[str, float]],
                **extra: Any) -> dict[str, Any]:
    """A side as ``bench.group.measure_side`` records it: units per service and bucket, with the limits."""
    registry = {hub: units.get(hub, {}).get("registry", 0.0) for hub in ("hub-1", "hub-2")}
    return {"wallSeconds": wall, "devices": devices, "peakRssMb": 70.0, "failed": 0,
            "importJobs": extra.get("import_jobs", 0), "bulkCalls": extra.get("bulk_calls", 0),
            "emulator": {"registryUnitsByHub": registry, "units": units, "limitsPerMinute": S1_LIMITS},
            "requests": extra.get("requests", {})}


JOB_REQUESTS = {"POST /jobs/create 200": 4, "GET /jobs/{id} 200": 4,
                "POST /registrations/{id}/query 200": 400, "PUT /{account}/{container}/{blob} 201": 4,
                "DELETE /{account}/{container}/{blob} 202": 8}


def three_sides(engine_wall: float = 9.0) -> dict[str, Any]:
    """10k devices on 2 hubs: import jobs (DPS-bound), the bulk path alone, and a sampled naive run."""
    return {
        "devices": 10000, "hubs": 2, "timeCompression": 10.0, "units": 1, "importJobThreshold": 1000,
        "engine": bucket_side(engine_wall, 10000, {"hub-1": {"jobs": 4.0}, "hub-2": {"jobs": 4.0},
                                                   "dps": {"dpsService": 400.0}},
                              import_jobs=2, requests=JOB_REQUESTS),
        "engineBulk": bucket_side(310.0, 10000, {"hub-1": {"registry": 5000.0, "query": 50.0},
                                                 "hub-2": {"registry": 5000.0, "query": 50.0}},
                                  bulk_calls=100, requests={"POST /devices 200": 100}),
        "naive": bucket_side(61.0, 1000, {"hub-1": {"registry": 1000.0}, "hub-2": {"registry": 1000.0}}),
    }


def test_the_throttle_floor_is_the_largest_bucket_and_ignores_unthrottled_ones() -> None:
    floors = report.bucket_floors({"hub-1": {"registry": 50.0, "jobs": 10.0, "twinRead": 9.0},
                                   "dps": {"dpsService": 500.0}}, S1_LIMITS)
    assert floors == pytest.approx({"hub-1/registry": 30.0, "hub-1/jobs": 6.0, "dps/dpsService": 30.0})


def test_jobs_operations_are_counted_apart_from_registry_operations_and_blob_requests() -> None:
    summary = report.group_summary(three_sides())
    engine, bulk = summary["engine"], summary["engineBulk"]
    assert (engine["registryOpsPerDevice"], engine["jobsOps"], engine["jobsCreated"]) == (0.0, 8.0, 4)
    assert (engine["httpRequests"], engine["blobRequests"]) == (408, 12)
    assert engine["throttleFloorBucket"] == "dps/dpsService"  # 400 query pages / 1000 per min = 24 s
    assert engine["realSeconds"] == pytest.approx(24.0 + 9.0 - 2.4)
    assert bulk["registryOpsPerDevice"] == 1.0
    assert bulk["throttleFloorBucket"] == "hub-1/registry"  # 5000 / 100 per min beats 50 queries / 20 per min
    assert summary["bulk"] == "engineBulk"
    assert summary["speedupBulkReal"] == pytest.approx(summary["naive"]["realSeconds"] / bulk["realSeconds"])
    assert summary["speedupReal"] > summary["speedupBulkReal"]


def with_jobs(run: dict[str, Any], rate: float, start: float = 10.0, rest: float = 1.0) -> dict[str, Any]:
    """``three_sides`` with the emulator's job records: per hub an export of its 5,000 devices, then an
    import of 5,000 lines, each modelled as ``start + devices / rate``; the engine's wall time is the DPS
    read (24 s real) and the jobs, both compressed by F = 10, plus ``rest`` seconds of its own."""
    job = {"devices": 5000, "modelledRealSeconds": start + 5000 / rate, "status": "completed"}
    records = [{**job, "type": "export"}, {**job, "type": "import"}]
    engine = run["engine"]
    engine["emulator"]["jobs"] = {"hub-1": records, "hub-2": records}
    engine["wallSeconds"] = (24.0 + 2 * job["modelledRealSeconds"]) / 10.0 + rest
    return {**run, "jobDevicesPerSecond": rate, "jobStartSeconds": start}


def test_the_critical_path_is_the_busiest_hubs_jobs_times_the_rounds_of_hubs() -> None:
    def jobs(*seconds: float) -> list[dict[str, Any]]:
        return [{"devices": 100, "modelledRealSeconds": s} for s in seconds]
    hubs = {"a": jobs(10, 20), "b": jobs(25), "c": [], "d": jobs(5), "e": jobs(1), "f": jobs(1)}
    # 5 hubs with jobs, 4 at a time: 2 rounds of the busiest hub's 30 s (2 jobs, 200 devices)
    assert jobmodel.critical_path(hubs) == {"seconds": 60.0, "devices": 400.0, "jobs": 4.0}
    assert jobmodel.critical_path({}) == {"seconds": 0.0, "devices": 0.0, "jobs": 0.0}


def test_job_time_follows_the_dps_read_and_is_converted_with_the_rest_of_the_run() -> None:
    engine = report.group_summary(with_jobs(three_sides(), rate=100.0))["engine"]
    # per hub: export + import, each 10 s + 5,000 / 100 = 60 s; the hubs run at once
    path = (engine["jobsRealSeconds"], engine["jobDevicePasses"], engine["jobsInChain"])
    assert path == (120.0, 10000.0, 2)
    assert engine["dpsFloorRealSeconds"] == pytest.approx(24.0)
    assert engine["restSeconds"] == pytest.approx(1.0)
    assert engine["realSeconds"] == pytest.approx(24.0 + 120.0 + 1.0)  # paced = max(floor, DPS + jobs)
    assert jobmodel.paced_seconds(200.0, 24.0, 120.0) == 200.0  # a larger floor covers the jobs


def test_slower_jobs_and_the_break_even_rate_are_computed_from_the_same_run() -> None:
    summary = report.group_summary(with_jobs(three_sides(), rate=1000.0))
    naive, engine = summary["naive"]["realSeconds"], summary["engine"]
    assert naive == pytest.approx(6010.0)  # 10,000 per hub at 100/min, plus the sample's 10 s beyond it
    assert engine["realSeconds"] == pytest.approx(24.0 + 2 * 15.0 + 1.0)
    slower = summary["jobsSlower"]
    assert slower["engineRealSeconds"] == pytest.approx(24.0 + 10 * 30.0 + 1.0)
    assert slower["speedupReal"] == pytest.approx(naive / slower["engineRealSeconds"])
    # naive / 50 = 120.2 s for the engine: 1 s rest, 24 s DPS, 2 x 10 s start, so 10,000 devices in 75.2 s
    assert summary["breakEvenJobRate"] == pytest.approx(10000 / 75.2)
    at_break_even = jobmodel.with_jobs(engine, 2 * 10.0 + 10000 / summary["breakEvenJobRate"])
    assert naive / at_break_even == pytest.approx(50.0)


def test_a_speedup_met_by_import_jobs_states_the_job_model_and_its_sensitivity() -> None:
    summary = report.group_summary(with_jobs(three_sides(), rate=1000.0))
    verdict = report.speedup_verdict(summary, report.Targets())
    assert verdict.met
    assert "4 jobs created, 2 hubs at a time, 2 jobs carrying 10,000 devices in sequence" in verdict.text
    assert "modelled as 10 s start latency + devices ÷ 1000 devices/s" in verdict.text
    assert f"With jobs 10x slower the engine would take 5.4 min: {6010 / 325:.1f}x" in verdict.text
    assert "under 50x when jobs handle fewer than 133 devices/s (13% of the modelled rate)" in verdict.text
    assert f"bulk path alone reached {summary['speedupBulkReal']:.2f}x" in verdict.text


def test_a_speedup_missed_because_jobs_are_too_slow_says_which_rate_would_do() -> None:
    verdict = report.speedup_verdict(report.group_summary(with_jobs(three_sides(), rate=100.0)),
                                     report.Targets())
    assert not verdict.met
    assert "fewer than 133 devices/s (133% of the modelled rate)" in verdict.text


def test_no_job_rate_is_enough_when_the_start_latencies_alone_miss_the_target(tmp_path: Path) -> None:
    summary = report.group_summary(with_jobs(three_sides(), rate=1000.0, start=60.0))
    assert math.isinf(summary["breakEvenJobRate"])
    verdict = report.speedup_verdict(summary, report.Targets())
    assert "No job rate keeps the speed-up ≥ 50x" in verdict.text
    raw = {"group": [with_jobs(three_sides(), rate=1000.0, start=60.0)], "memory": [],
           "single": {"skipped": "not run in this test"}}
    text = render(assemble(raw, BenchOptions(out=tmp_path, job_rate=1000.0, job_start=60.0)))
    assert "on the critical path (2.2 min modelled); no job rate keeps the speed-up ≥ 50x" in text
    without_jobs = report.group_summary(three_sides())
    assert "breakEvenJobRate" not in without_jobs
    assert "jobsSlower" not in without_jobs


def test_ops_verdicts_judge_the_bulk_path_on_its_own_side_and_the_engine_above_the_threshold() -> None:
    bulk, job = report.ops_verdicts(report.group_summary(three_sides()), report.Targets())
    assert (bulk.met, job.met) == (True, True)
    assert "bulk path, 10,000 devices" in bulk.name
    assert "(1,000 devices per hub)" in job.name
    assert "8 operations on the hubs' jobs budget" in job.text
    assert report.above_threshold({"devices": 2998, "hubs": 3}, 1000)  # round robin: 1,000 / 999 / 999
    assert not report.above_threshold({"devices": 2997, "hubs": 3}, 1000)  # 999 per hub


def test_the_report_shows_import_jobs_bulk_and_naive_side_by_side(tmp_path: Path) -> None:
    raw = {"group": [three_sides()], "memory": [], "single": {"skipped": "not run in this test"}}
    results = assemble(raw, BenchOptions(out=tmp_path))
    text = render(results)
    for label in ("engine (import jobs)", "engine, bulk path only", "naive (sample 1,000, extrapolated)",
                  "speed-up, engine vs naive", "speed-up, bulk path vs naive", "| 4 / 8 |"):
        assert label in text
    assert results["meta"]["importJobThreshold"] == 1000


def test_the_report_states_the_job_model_a_slower_jobs_row_and_the_break_even_rate(tmp_path: Path) -> None:
    raw = {"group": [with_jobs(three_sides(), rate=1000.0)], "memory": [],
           "single": {"skipped": "not run in this test"}}
    results = assemble(raw, BenchOptions(out=tmp_path, job_rate=1000.0, job_start=10.0))
    assert (results["meta"]["jobDevicesPerSecond"], results["meta"]["jobStartSeconds"]) == (1000.0, 10.0)
    text = render(results)
    assert "**10 s start latency, then 1000 devices/s**" in text
    assert "| 10,000 | engine, jobs 10x slower (modelled) | | | 5.4 min |" in text
    assert f"| 10,000 | **speed-up, jobs 10x slower** | | | {6010 / 325:.1f}x |" in text
    assert "down to a job rate of **133 devices/s** (13% of the modelled rate)" in text


def test_request_patterns_hide_blob_names_and_keep_job_creation_apart() -> None:
    blob = "/devstoreaccount1/unprovision-import-0123456789abcdef/import-42.txt"
    assert wirecount.pattern("put", blob + "?comp=block") == "PUT /{account}/{container}/{blob}"
    assert wirecount.pattern("put", "/devstoreaccount1/unprovision-import-0123456789abcdef") == \
        "PUT /{account}/{container}"
    assert wirecount.pattern("post", "/jobs/create") == "POST /jobs/create"
    assert wirecount.pattern("get", "/jobs/job-1") == "GET /jobs/{id}"


def test_memory_is_judged_per_path_bulk_and_as_the_product_runs(tmp_path: Path) -> None:
    def mem(path: str, devices: int, rss: float, jobs: int) -> dict[str, Any]:
        return {"path": path, "action": "delete" if path == "bulk" else "disable", "devices": devices,
                "peakRssMb": rss, "baselineRssMb": 23.0, "wallSeconds": 1.0, "bulkCalls": 0, "failed": 0,
                "purged": devices, "importJobs": jobs}

    raw = {"group": [], "single": {"skipped": "not run in this test"},
           "memory": [mem("product", 100000, 140.0, 3), mem("bulk", 1000, 66.0, 0),
                      mem("bulk", 100000, 70.0, 0), mem("product", 1000, 68.0, 0)]}
    results = assemble(raw, BenchOptions(out=tmp_path))
    bulk, product = results["verdicts"]
    assert bulk["name"].endswith("(bulk path, delete)")
    assert bulk["met"]
    assert "as the product runs, disable; 3 import jobs" in product["name"]
    assert not product["met"]
    assert "72 MB" in product["text"]  # 140 - 68
    assert "| product | disable | 100,000 | 140.0 MB |" in render(results)


def test_a_missed_round_trip_target_separates_per_event_calls_from_amortised_reads() -> None:
    single = {"roundTripsPerEvent": 6.02, "latencyMs": 20.0, "p95Seconds": 0.3, "events": 100,
              "pacedIntervalSeconds": 0.5,
              "roundTripsByKind": {
                  "GET /devices/{device_id}": 1.0, "GET /enrollments/{registration_id}": 2.0,
                  "GET /registrations/{registration_id}": 1.0, "PUT /devices/{device_id}": 1.0,
                  "PUT /enrollments/{registration_id}": 1.0, "POST /enrollmentGroups/query": 0.02}}
    trips, _ = report.single_verdicts(single, report.Targets())
    assert not trips.met
    assert "6.00 per event come from the 5 kinds called on every event" in trips.text
    assert "`POST /enrollmentGroups/query` 0.02 (2 calls) over the 50 s paced phase" in trips.text
    single["roundTripsByKind"]["POST /enrollmentGroups/query"] = 0.01
    assert "0.01 (1 call) over" in report.single_verdicts(single, report.Targets())[0].text
