"""The storm benchmark's pure parts: the still-sending curve, floors, phase summaries, verdict, markdown."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import storm_report
from bench.markdown import render
from bench.run import BenchOptions, assemble
from bench.storm import step_times


def phase(mode: str, hub: list[float | None], *, dps_units: float = 40.0, registry: float = 20.0,
          jobs: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    done = sum(1 for t in hub if t is not None)
    return {
        "mode": mode, "events": len(hub), "completed": done, "failed": 0,
        "wallSeconds": max((t for t in hub if t is not None), default=0.0),
        "dpsLatency": [1.0] * len(hub), "hubLatency": hub, "hubSinceStart": hub,
        "dpsUnits": dps_units, "registryUnitsByHub": {"hub-1": registry, "hub-2": registry / 2},
        "importJobs": 1 if jobs else 0, "jobs": jobs or {}, "http429": 3,
    }


def raw_storm(coalesced: list[float | None], per_event: list[float | None], **extra: Any) -> dict[str, Any]:
    return {"events": len(coalesced), "hubs": 3, "units": 1, "timeCompression": extra.get("factor", 1.0),
            "groupMembers": len(coalesced) // 2, "jobDevicesPerSecond": 277.8, "jobStartSeconds": 10.0,
            "appOpsPerMinute": 100.0, "jobThreshold": 100,
            "coalesced": phase("coalesced", coalesced, **extra.get("c", {})),
            "perEvent": phase("perEvent", per_event, **extra.get("p", {}))}


def test_the_curve_steps_down_by_one_per_refusal_in_real_time() -> None:
    curve = storm_report.still_sending_curve([3.0, 1.0, None, 2.0], 4, compression=10.0)
    assert curve == [(0.0, 4), (10.0, 3), (20.0, 2), (30.0, 1)]  # the unrefused device keeps sending


def test_a_long_curve_is_thinned_but_keeps_its_start_and_its_end() -> None:
    curve = storm_report.still_sending_curve([float(i) for i in range(1, 1001)], 1000, 1.0, points=50)
    assert len(curve) <= 51
    assert curve[0] == (0.0, 1000)
    assert curve[-1] == (1000.0, 0)
    assert [n for _, n in curve] == sorted((n for _, n in curve), reverse=True)


def test_floors_follow_the_published_budgets() -> None:
    assert storm_report.dps_floor_seconds(10_000 * 4) == pytest.approx(2400.0)  # 40k ops at 1,000/min
    assert storm_report.registry_floor_seconds({"a": 3334.0, "b": 10.0}) == pytest.approx(2000.4)
    assert storm_report.registry_floor_seconds({"a": 200.0}, units=2) == pytest.approx(60.0)
    key = "modelledRealSeconds"  # what the emulator records for each ended job
    jobs = {"a": [{key: 22.0}, {key: 12.0}], "b": [{key: 30.0}]}
    assert storm_report.jobs_floor_seconds(jobs) == pytest.approx(34.0)
    assert storm_report.jobs_floor_seconds({}) == 0.0


def test_a_phase_is_converted_to_real_time_and_says_what_bound_it() -> None:
    summary = storm_report.phase_summary(phase("coalesced", [5.0, 10.0, 20.0, 24.0], dps_units=40.0,
                                               registry=20.0), compression=2.0)
    assert summary["allRefusedSeconds"] == 48.0
    assert summary["wallTimesFactorSeconds"] == 48.0
    assert summary["dpsOpsPerEvent"] == 10.0
    assert summary["registryOpsPerEvent"] == pytest.approx(7.5)  # (20 + 10) / 4
    assert summary["floorSeconds"]["dps"] == pytest.approx(2.4)
    assert summary["floorSeconds"]["registry"] == pytest.approx(12.0)
    assert summary["floorBucket"] == "registry"
    assert summary["boundBy"] == "host (client side)"  # 48 s against a 12 s floor
    assert summary["hubP95Seconds"] == 48.0
    assert summary["dpsP50Seconds"] == 2.0


def test_a_phase_at_its_floor_is_bound_by_the_services_and_an_unfinished_one_has_no_time() -> None:
    at_floor = storm_report.phase_summary(phase("perEvent", [30.0, 60.0], registry=100.0), compression=1.0)
    assert at_floor["boundBy"] == "services (registry floor)"
    unfinished = storm_report.phase_summary(phase("perEvent", [30.0, None]), compression=1.0)
    assert unfinished["allRefusedSeconds"] == math.inf
    assert unfinished["refusedAtHub"] == 1
    assert unfinished["boundBy"] == "unfinished"


def test_the_speedup_and_its_verdict_come_from_the_time_until_every_device_is_refused() -> None:
    met = storm_report.storm_summary(raw_storm([10.0, 12.0], [60.0, 70.0]))
    assert met["speedup"] == pytest.approx(70 / 12)
    verdict = storm_report.storm_verdict(met)
    assert verdict.met
    assert verdict.text.startswith("5.8x")
    missed = storm_report.storm_summary(raw_storm([40.0, 50.0], [60.0, 70.0], c={"dps_units": 500.0}))
    verdict = storm_report.storm_verdict(missed)
    assert not verdict.met
    assert "missed: 1.4x" in verdict.text
    assert "DPS floor 30.0 s (250.00 DPS ops/event)" in verdict.text
    assert "at most 2.3x" in verdict.text  # per-event 70 s over the coalesced DPS floor of 30 s


def test_a_storm_with_an_unfinished_phase_is_missed() -> None:
    summary = storm_report.storm_summary(raw_storm([10.0, None], [60.0, 70.0]))
    assert summary["speedup"] == 0.0
    assert not storm_report.storm_verdict(summary).met


def test_step_times_take_the_applied_dps_and_hub_steps() -> None:
    def step(kind: str, outcome: str, at: str) -> SimpleNamespace:
        return SimpleNamespace(kind=kind, outcome=outcome, at=at)

    record = SimpleNamespace(steps=(
        step("BlockingEnrollmentCreated", "done", "2026-01-01T00:00:01.000000Z"),
        step("HubIdentityDisabled", "skipped", "2026-01-01T00:00:02.000000Z"),
        step("HubIdentityDisabled", "done", "2026-01-01T00:00:07.500000Z"),
    ))
    dps, hub = step_times(record)
    assert dps is not None
    assert hub is not None
    assert hub - dps == pytest.approx(6.5)
    assert step_times(SimpleNamespace(steps=(step("HubIdentityDisabled", "failed", "x"),))) == (None, None)


def test_assemble_adds_the_storm_summary_and_verdict_and_render_shows_both_phases(tmp_path: Path) -> None:
    raw = {"group": [], "symmetric": [], "memory": [], "single": {"skipped": "--skip-single"},
           "storm": raw_storm([10.0, 12.0], [60.0, 70.0], factor=10.0)}
    results = assemble(raw, BenchOptions(out=tmp_path))
    assert [v["name"] for v in results["verdicts"]] == [storm_report.storm_verdict(results["storm"]).name]
    assert results["storm"]["coalesced"]["allRefusedSeconds"] == 120.0  # 12 s wall x F = 10
    text = render(results)
    assert "## Storm of single-device events" in text
    assert "| coalesced (STORM_COALESCING=true) | 2 / 2 | 2.0 min |" in text
    assert "| per-event (STORM_COALESCING=false) | 2 / 2 | 11.7 min |" in text
    assert "![storm: devices still able to send](storm.png)" in text
    skipped = assemble({**raw, "storm": {"skipped": "--skip-storm"}}, BenchOptions(out=tmp_path))
    assert "Not measured: --skip-storm" in render(skipped)
