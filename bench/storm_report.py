"""The storm benchmark's pure side: curves, floors, per-phase summaries, the verdict and the markdown section.

Input is what ``bench.storm.run_storm`` measured (``raw``): per phase, for each event the wall seconds from
its own enqueue and from the phase's first enqueue to its DPS revocation and to its hub step (``None`` when
the journal has none), plus the emulator's units and calls during the phase. Times are converted to real
service time by multiplying by the time-compression factor F (throttle windows and jobs are 1/F as long).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.report import Verdict, percentile, ratio

SPEEDUP_TARGET = 5.0
DPS_SERVICE_PER_MINUTE = 1000.0  # DPS service API, per instance (docs/azure-behaviour.md §8.2)
S1_REGISTRY_PER_MINUTE = 100.0  # identity-registry ops per S1 unit (§8.1)
HOST_BOUND = 1.25  # real time above this many times the largest service floor: the host, not the services
CURVE_POINTS = 200
PHASES = ("coalesced", "perEvent")
LABELS = {"coalesced": "coalesced (STORM_COALESCING=true)", "perEvent": "per-event (STORM_COALESCING=false)"}


def still_sending_curve(refused_at: Sequence[float | None], events: int, compression: float,
                        points: int = CURVE_POINTS) -> list[tuple[float, int]]:
    """(real seconds since the first enqueue, devices still able to send) as a step curve: ``events`` at 0,
    one fewer at each hub refusal; thinned to about ``points`` points, keeping the first and the last."""
    times = sorted(t * compression for t in refused_at if t is not None)
    curve = [(0.0, events)] + [(t, events - i) for i, t in enumerate(times, start=1)]
    if len(curve) <= points:
        return curve
    step = (len(curve) - 1) / (points - 1)
    picked = sorted({round(i * step) for i in range(points)} | {len(curve) - 1})
    return [curve[i] for i in picked]


def dps_floor_seconds(dps_units: float) -> float:
    """Real seconds the DPS service API needs for ``dps_units`` accepted operations at 1,000/min."""
    return dps_units / DPS_SERVICE_PER_MINUTE * 60.0


def registry_floor_seconds(units_by_hub: Mapping[str, float], units: int = 1) -> float:
    """Real seconds the busiest hub's registry needs for its accepted units at S1 (100/min per unit)."""
    busiest = max(units_by_hub.values(), default=0.0)
    return busiest / (S1_REGISTRY_PER_MINUTE * units) * 60.0


def jobs_floor_seconds(jobs_by_hub: Mapping[str, Sequence[Mapping[str, Any]]]) -> float:
    """Real seconds of modelled import-job time on the busiest hub (a hub runs one job at a time)."""
    totals = [sum(float(j.get("modelledRealSeconds", 0.0)) for j in jobs) for jobs in jobs_by_hub.values()]
    return max(totals, default=0.0)


def _real(values: Sequence[float | None], compression: float) -> list[float]:
    return [v * compression for v in values if v is not None]


def phase_summary(phase: Mapping[str, Any], compression: float, units: int = 1) -> dict[str, Any]:
    """One phase's figures in real service time (wall x F), its floors and what bound it."""
    events = int(phase["events"])
    hub_since_start = list(phase["hubSinceStart"])
    refused = sum(1 for t in hub_since_start if t is not None)
    all_refused = max(_real(hub_since_start, compression)) if refused == events and events else math.inf
    dps_lat, hub_lat = _real(phase["dpsLatency"], compression), _real(phase["hubLatency"], compression)
    dps_units = float(phase["dpsUnits"])
    registry = {hub: float(n) for hub, n in phase["registryUnitsByHub"].items()}
    floors = {
        "dps": dps_floor_seconds(dps_units),
        "registry": registry_floor_seconds(registry, units),
        "jobs": jobs_floor_seconds(phase.get("jobs", {})),
    }
    bucket = max(floors, key=lambda k: floors[k])
    over = ratio(all_refused, floors[bucket])
    bound = f"services ({bucket} floor)" if over <= HOST_BOUND else "host (client side)"
    if not math.isfinite(all_refused):
        bound = "unfinished"
    wall = float(phase["wallSeconds"])
    return {
        "mode": phase["mode"],
        "events": events,
        "completed": int(phase["completed"]),
        "failed": int(phase.get("failed", 0)),
        "unfinished": events - int(phase["completed"]) - int(phase.get("failed", 0)),
        "refusedAtHub": refused,
        "allRefusedSeconds": all_refused,
        "wallSeconds": wall,
        "wallTimesFactorSeconds": wall * compression,
        "eventsPerWallSecond": ratio(float(phase["completed"]), wall),
        "dpsP50Seconds": percentile(dps_lat, 50),
        "dpsP95Seconds": percentile(dps_lat, 95),
        "hubP50Seconds": percentile(hub_lat, 50),
        "hubP95Seconds": percentile(hub_lat, 95),
        "dpsOpsPerEvent": ratio(dps_units, events),
        "registryOpsPerEvent": ratio(sum(registry.values()), events),
        "importJobs": int(phase.get("importJobs", 0)),
        "http429": int(phase.get("http429", 0)),
        "floorSeconds": floors,
        "floorBucket": bucket,
        "overFloor": over,
        "boundBy": bound,
        "curve": still_sending_curve(hub_since_start, events, compression),
        "calls": dict(phase.get("calls", {})),  # "service METHOD /pattern": answered calls (every status)
    }


def storm_summary(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Both phases summarised, the speed-up and the best speed-up the coalesced phase's DPS floor allows."""
    compression = float(raw["timeCompression"])
    phases = {name: phase_summary(raw[name], compression, int(raw.get("units", 1)))
              for name in PHASES if name in raw}
    out: dict[str, Any] = {k: v for k, v in raw.items() if k not in PHASES}
    out.update(phases)
    if len(phases) == len(PHASES):
        coalesced, per_event = phases["coalesced"], phases["perEvent"]
        out["speedup"] = ratio(per_event["allRefusedSeconds"], coalesced["allRefusedSeconds"])
        out["speedupCeiling"] = ratio(per_event["allRefusedSeconds"], coalesced["floorSeconds"]["dps"])
    return out


def storm_verdict(storm: Mapping[str, Any], target: float = SPEEDUP_TARGET) -> Verdict:
    name = f"storm of single-device events, time until every device is refused at its hub, >= {target:g}x"
    speedup = float(storm.get("speedup", math.nan))
    if math.isnan(speedup):
        return Verdict(name, False, "not measured: a phase did not finish")
    coalesced, per_event = storm["coalesced"], storm["perEvent"]
    text = (f"{speedup:.1f}x: per-event {_secs(per_event['allRefusedSeconds'])}, coalesced "
            f"{_secs(coalesced['allRefusedSeconds'])} (real service time, {storm['events']:,} events, "
            f"F = {storm['timeCompression']:g})")
    if speedup >= target:
        return Verdict(name, True, text)
    why = (f"; the coalesced phase is bound by {coalesced['boundBy']}: DPS floor "
           f"{_secs(coalesced['floorSeconds']['dps'])} ({coalesced['dpsOpsPerEvent']:.2f} DPS ops/event), "
           f"registry floor {_secs(coalesced['floorSeconds']['registry'])} "
           f"({coalesced['registryOpsPerEvent']:.2f} registry ops/event); at the DPS floor the speed-up "
           f"could be at most {storm['speedupCeiling']:.1f}x")
    return Verdict(name, False, f"missed: {text}{why}")


def _secs(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if value >= 3600:
        return f"{value / 3600:.2f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def markdown_section(storm: Mapping[str, Any]) -> list[str]:
    """The report's "Storm of single-device events" section (pure)."""
    lines = ["", "## Storm of single-device events (queue → local host → emulator)", ""]
    if "skipped" in storm:
        return [*lines, f"Not measured: {storm['skipped']}"]
    factor = storm["timeCompression"]
    lines += [
        (f"{storm['events']:,} `stolen` events per phase ({storm['groupMembers']:,} of them group members: "
         f"a blocking enrollment each), queued at once on {storm['hubs']} hubs (S1 x 1: 100 registry "
         "ops/min), "
         f"DPS at 1,000 ops/min, jobs {storm['jobStartSeconds']:g} s + {storm['jobDevicesPerSecond']:g} "
         f"devices/s. App budget `IOTHUB_REGISTRY_OPS_PER_MINUTE` = {storm['appOpsPerMinute']:g} (the "
         f"emulator's compressed S1 budget), `STORM_JOB_THRESHOLD` = {storm['jobThreshold']}. "
         f"Times are wall seconds x **F = {factor:g}** (real service time); *floor* = accepted units "
         f"÷ budget, real; *bound by* says services when real ≤ {HOST_BOUND:g} x the largest floor."),
        "",
        ("| phase | completed / events | every device refused (real) | wall | p50 / p95 event → DPS "
         "revoked | p50 / p95 event → hub refused | DPS ops/event | registry ops/event | import jobs | 429s "
         "| DPS floor | registry floor | jobs floor | bound by |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in PHASES:
        p = storm.get(name)
        if p is None:
            continue
        f = p["floorSeconds"]
        lines.append(
            f"| {LABELS[name]} | {p['completed']:,} / {p['events']:,} | {_secs(p['allRefusedSeconds'])} "
            f"| {_secs(p['wallSeconds'])} | {_secs(p['dpsP50Seconds'])} / {_secs(p['dpsP95Seconds'])} "
            f"| {_secs(p['hubP50Seconds'])} / {_secs(p['hubP95Seconds'])} | {p['dpsOpsPerEvent']:.2f} "
            f"| {p['registryOpsPerEvent']:.2f} | {p['importJobs']} | {p['http429']} | {_secs(f['dps'])} "
            f"| {_secs(f['registry'])} | {_secs(f['jobs'])} | {p['boundBy']} ({p['overFloor']:.2f}x) |")
    if "speedup" in storm:
        lines += ["", (f"Speed-up (per-event ÷ coalesced, time until every device is refused): "
                       f"**{storm['speedup']:.1f}x**; the coalesced phase's DPS floor alone allows at most "
                       f"{storm['speedupCeiling']:.1f}x.")]
    return [*lines, "", "![storm: devices still able to send](storm.png)"]
