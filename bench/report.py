"""Pure report logic: extrapolation, compressed → real service time, ratios, verdicts, the markdown table.

Nothing here does I/O or reads a clock, so tests can feed it numbers. Every verdict sentence is built from
the measured numbers it is given; nothing is a fixed "passed".

Conversion to real service time (stated in the report): a throttle window lasts 60 s / F in the emulator.
The part of a run that the budgets pace is the *throttle floor* — the largest, over every throttled bucket
(each hub's ``registry``, ``query`` and ``jobs``, DPS's service API), of the units that bucket accepted ÷
its budget per minute. Import/export jobs are paced too: the emulator models each as a start latency plus
devices ÷ rate in real time, compressed by the same F, and the jobs on the critical path come after the
DPS read (``bench.jobmodel``). In real time the paced part is F times longer; whatever the run spent beyond
it (client work, TLS, latency, blob traffic, poll lag) is not compressed and carries over as measured:

    paced = max(floor_real, dps_floor_real + jobs_real)
    real ≈ paced + max(0, wall - paced / F)

Not pinned by a documented source: IoT Hub shapes traffic before it rejects (docs/azure-behaviour.md §8), so a
real run may sit slightly below this estimate; the fixed window also lets the first window's budget through at
once. Azure documents no job duration: the job rate and start latency are the emulator's knobs (defaults and
sources in emulator/README.md), so the verdict on the import-job path also gives the speed-up with jobs 10x
slower and the job rate below which the target would be missed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench import jobmodel
from bench.jobmodel import duration as _dur

S1_OPS_PER_MINUTE = 100.0


@dataclass(frozen=True)
class Targets:
    speedup_at_10k: float = 50.0
    ops_per_device_bulk: float = 1.0
    ops_per_device_import_job: float = 0.02
    round_trips_per_event: float = 6.0
    p95_seconds: float = 0.5
    rss_growth_mb: float = 50.0
    import_job_threshold: int = 1000


@dataclass(frozen=True)
class Verdict:
    name: str
    met: bool
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "met": self.met, "text": self.text}


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; infinite when the denominator is zero but the numerator is not."""
    if denominator <= 0:
        return math.inf if numerator > 0 else math.nan
    return numerator / denominator


def extrapolate(value: float, sample: int, total: int) -> float:
    """Linear scale-up of a sampled measurement (valid for a throttle-bound, per-device loop)."""
    if sample <= 0:
        raise ValueError("sample must be positive")
    return value * total / sample


def throttle_floor_seconds(units_by_hub: Mapping[str, float], ops_per_minute: float) -> float:
    """Seconds the busiest hub's registry budget needs for the operations it accepted (real time)."""
    if ops_per_minute <= 0:
        raise ValueError("budget must be positive")
    busiest = max(units_by_hub.values(), default=0.0)
    return busiest / ops_per_minute * 60.0


def bucket_floors(
    units: Mapping[str, Mapping[str, float]], limits: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Real seconds each throttled ``service/bucket`` needs for the units it accepted (unthrottled: none)."""
    floors: dict[str, float] = {}
    for service, buckets in units.items():
        for bucket, spent in buckets.items():
            limit = float(limits.get(service, {}).get(bucket, 0.0))
            if limit > 0 and spent > 0:
                floors[f"{service}/{bucket}"] = spent / limit * 60.0
    return floors


def _bucket_total(units: Mapping[str, Mapping[str, float]], bucket: str, services: list[str]) -> float:
    return sum(float(units.get(svc, {}).get(bucket, 0.0)) for svc in services)


def real_seconds(wall: float, floor_real: float, factor: float) -> float:
    """Measured wall time under compression ``factor`` → estimated real service time (see module doc)."""
    if factor <= 0:
        raise ValueError("compression factor must be positive")
    return floor_real + max(0.0, wall - floor_real / factor)


def throttle_share(wall: float, floor_real: float, factor: float) -> float:
    """Fraction of the measured wall time that S1 pacing accounts for (1.0 = fully throttle-bound)."""
    return min(1.0, ratio(floor_real / factor, wall)) if wall > 0 else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def count_status(requests: Mapping[str, int], status: str) -> int:
    """Sum of client-side request counts (``"METHOD /pattern STATUS": n``) with that status."""
    return sum(n for key, n in requests.items() if key.rsplit(" ", 1)[-1] == status)


def count_operation(requests: Mapping[str, int], operation: str) -> int:
    """Sum of counts for one ``"METHOD /pattern"``, any status."""
    return sum(n for key, n in requests.items() if key.rsplit(" ", 1)[0] == operation)


def _check(name: str, measured: float, target: float, *, at_least: bool, unit: str, why: str = "",
           note: str = "") -> Verdict:
    """``why`` explains a miss; ``note`` is added either way (a caveat that holds when met too)."""
    met = measured >= target if at_least else measured <= target
    sign = "≥" if at_least else "≤"
    if met:
        text = f"met: {measured:.3g}{unit} (target {sign} {target:g}{unit})"
        return Verdict(name, True, text + (f". {note}" if note else ""))
    gap = ratio(target, measured) if at_least else ratio(measured, target)
    diff = abs(measured - target)
    text = (
        f"missed: {measured:.3g}{unit} vs target {sign} {target:g}{unit} "
        f"(off by {diff:.3g}{unit}, a factor of {gap:.3g})"
    )
    extra = ". ".join(part for part in (why, note) if part)
    return Verdict(name, False, text + (f". {extra}" if extra else ""))


def side_summary(
    side: Mapping[str, Any], devices: int, factor: float, ops_per_minute: float
) -> dict[str, Any]:
    """Per-side figures at ``devices``: measured (maybe sampled) and extrapolated/converted. The floor is
    the largest bucket floor when the emulator's per-bucket units and limits are known, else the
    registry's."""
    measured_devices = int(side["devices"])
    emulator = side["emulator"]
    registry = {hub: float(n) for hub, n in emulator["registryUnitsByHub"].items()}
    hubs = list(registry)
    scale = devices / measured_devices if measured_devices else math.nan
    wall = float(side["wallSeconds"]) * scale
    units = emulator.get("units") or {hub: {"registry": n} for hub, n in registry.items()}
    units_full = {svc: {b: n * scale for b, n in buckets.items()} for svc, buckets in units.items()}
    limits = emulator.get("limitsPerMinute") or {hub: {"registry": ops_per_minute} for hub in hubs}
    floors = bucket_floors(units_full, limits)
    floor_bucket = max(floors, key=lambda k: floors[k]) if floors else "-"
    floor_real = floors.get(floor_bucket, 0.0)
    dps_floor = max((v for k, v in floors.items() if k.startswith("dps/")), default=0.0)
    path = jobmodel.critical_path(emulator.get("jobs") or {})  # engine sides are never sampled
    paced = jobmodel.paced_seconds(floor_real, dps_floor, path["seconds"])
    real = real_seconds(wall, paced, factor)
    requests = side.get("requests", {})
    blob = {k: n for k, n in requests.items() if k.split(" ", 2)[1].startswith("/{account}")}
    return {
        "measuredDevices": measured_devices,
        "sampled": measured_devices < devices,
        "wallSeconds": wall,
        "measuredWallSeconds": float(side["wallSeconds"]),
        "registryOpsPerDevice": ratio(sum(registry.values()), measured_devices),
        "jobsOps": _bucket_total(units, "jobs", hubs),
        "queryOps": _bucket_total(units, "query", hubs),
        "throttleFloorRealSeconds": floor_real,
        "throttleFloorBucket": floor_bucket,
        "throttleFloorsRealSeconds": floors,
        "dpsFloorRealSeconds": dps_floor,
        "jobsRealSeconds": path["seconds"],
        "jobDevicePasses": path["devices"],
        "jobsInChain": path["jobs"],
        "restSeconds": real - paced,
        "realSeconds": real,
        "wallTimesFactorSeconds": wall * factor,
        "throttleShare": throttle_share(wall, floor_real, factor),
        "http429": count_status(requests, "429"),
        "httpRequests": sum(requests.values()) - sum(blob.values()),
        "blobRequests": sum(blob.values()),
        "importJobs": int(side.get("importJobs", 0)),
        "jobsCreated": count_operation(requests, "POST /jobs/create"),
        "bulkCalls": int(side.get("bulkCalls", 0)),
        "peakRssMb": float(side["peakRssMb"]),
        "failed": int(side.get("failed", 0)),
    }


SIDES = ("engine", "engineBulk", "naive")


def group_summary(run: Mapping[str, Any], target: float = 50.0) -> dict[str, Any]:
    """One size of the comparison: every side measured, ratios to the baseline (compressed and real).
    ``bulk`` names the side that measured the bulk path alone (the engine itself when it made no job).
    When the engine ran jobs: its speed-up with jobs ``jobmodel.SLOWER`` times slower, and the job rate
    below which its speed-up falls under ``target``."""
    devices, factor = int(run["devices"]), float(run["timeCompression"])
    budget = S1_OPS_PER_MINUTE * int(run.get("units", 1))
    summary: dict[str, Any] = {"devices": devices, "timeCompression": factor, "hubs": int(run.get("hubs", 1)),
                               "importJobThreshold": run.get("importJobThreshold"),
                               "jobDevicesPerSecond": run.get("jobDevicesPerSecond"),
                               "jobStartSeconds": run.get("jobStartSeconds")}
    for name in SIDES:
        if name in run:
            summary[name] = side_summary(run[name], devices, factor, budget)
    naive = summary["naive"]
    summary["bulk"] = "engineBulk" if "engineBulk" in summary else "engine"
    summary["speedupMeasured"] = ratio(naive["wallSeconds"], summary["engine"]["wallSeconds"])
    summary["speedupReal"] = ratio(naive["realSeconds"], summary["engine"]["realSeconds"])
    bulk = summary[summary["bulk"]]
    summary["speedupBulkMeasured"] = ratio(naive["wallSeconds"], bulk["wallSeconds"])
    summary["speedupBulkReal"] = ratio(naive["realSeconds"], bulk["realSeconds"])
    engine = summary["engine"]
    if engine["jobsRealSeconds"] > 0:
        slower = jobmodel.with_jobs(engine, jobmodel.SLOWER * engine["jobsRealSeconds"])
        summary["jobsSlower"] = {"factor": jobmodel.SLOWER, "engineRealSeconds": slower,
                                 "speedupReal": ratio(naive["realSeconds"], slower)}
        summary["breakEvenJobRate"] = jobmodel.break_even_rate(
            engine, naive["realSeconds"], target, float(run.get("jobStartSeconds") or 0.0))
    return summary


def speedup_verdict(summary: Mapping[str, Any], targets: Targets) -> Verdict:
    engine, naive = summary["engine"], summary["naive"]
    name = f"group purge speed-up at {summary['devices']:,} devices (real service time)"
    if engine["jobsCreated"]:
        return _check(name, summary["speedupReal"], targets.speedup_at_10k, at_least=True, unit="x",
                      note=jobmodel.jobs_note(summary, targets.speedup_at_10k))
    cap = ratio(naive["registryOpsPerDevice"], engine["registryOpsPerDevice"])
    why = (
        f"At {summary['devices']:,} devices the engine spent {engine['registryOpsPerDevice']:.2f} throttled "
        f"registry ops/device and the baseline {naive['registryOpsPerDevice']:.2f}; with the budgets pacing "
        f"{engine['throttleShare']:.0%} (engine) and {naive['throttleShare']:.0%} (baseline) of the wall "
        f"time, the real-time ratio cannot exceed their quotient, {cap:.2f}. The engine made 0 import jobs"
        f"{_below(summary, targets.import_job_threshold)}; only a path that leaves the per-device registry "
        f"budget (≤ {naive['registryOpsPerDevice'] / targets.speedup_at_10k:.2f} ops/device) reaches "
        f"{targets.speedup_at_10k:g}x"
    )
    return _check(name, summary["speedupReal"], targets.speedup_at_10k, at_least=True, unit="x", why=why)


def _below(summary: Mapping[str, Any], threshold: int) -> str:
    if above_threshold(summary, threshold):
        return ""
    per_hub = math.ceil(int(summary["devices"]) / max(1, int(summary.get("hubs", 1))))
    return f" (at most {per_hub:,} devices per hub, below the import-job threshold of {threshold:,})"


def above_threshold(summary: Mapping[str, Any], threshold: int) -> bool:
    """True when the busiest hub holds at least ``threshold`` of the group (devices go round robin), which
    is the engine's own per-hub rule for taking an import job."""
    return math.ceil(int(summary["devices"]) / max(1, int(summary.get("hubs", 1)))) >= threshold


def ops_verdicts(summary: Mapping[str, Any], targets: Targets) -> list[Verdict]:
    """≤ 1 op/device on the bulk path at every size; ≤ 0.02 for the engine above the import-job threshold."""
    devices, bulk = int(summary["devices"]), summary[summary["bulk"]]
    verdicts = [
        _check(
            f"throttled registry ops/device, bulk path, {devices:,} devices",
            bulk["registryOpsPerDevice"],
            targets.ops_per_device_bulk,
            at_least=False,
            unit="",
        )
    ]
    if above_threshold(summary, targets.import_job_threshold):
        engine = summary["engine"]
        if engine["jobsCreated"]:
            note = (f"{engine['importJobs']} hubs purged by import jobs: {engine['jobsCreated']} jobs "
                    f"created, {engine['jobsOps']:.0f} operations on the hubs' jobs budget (not the "
                    f"registry's), {engine['bulkCalls']} bulk calls")
            why = ""
        else:
            note = ""
            why = ("0 import jobs were created (no import-job factory, or no hub reached the threshold); "
                   "every device went through per-device-counted bulk calls")
        verdicts.append(
            _check(
                f"throttled registry ops/device above the import-job threshold "
                f"({targets.import_job_threshold:,} devices per hub), {devices:,} devices",
                engine["registryOpsPerDevice"],
                targets.ops_per_device_import_job,
                at_least=False,
                unit="",
                why=why,
                note=note,
            )
        )
    return verdicts


MEMORY_LABELS = {"bulk": "bulk path, delete", "product": "as the product runs"}


def memory_verdict(small: Mapping[str, Any], large: Mapping[str, Any], targets: Targets) -> Verdict:
    growth = float(large["peakRssMb"]) - float(small["peakRssMb"])
    path = str(large.get("path", "bulk"))
    label = MEMORY_LABELS.get(path, path)
    if path == "product":
        jobs = int(large.get("importJobs", 0))
        label += f", {large.get('action', 'disable')}; {jobs} import jobs at the largest size"
    return _check(
        f"peak RSS growth {int(small['devices']):,} → {int(large['devices']):,} devices ({label})",
        growth,
        targets.rss_growth_mb,
        at_least=False,
        unit=" MB",
    )


def single_verdicts(single: Mapping[str, Any], targets: Targets) -> list[Verdict]:
    return [
        _check(
            "service round trips per single-device event",
            float(single["roundTripsPerEvent"]),
            targets.round_trips_per_event,
            at_least=False,
            unit="",
            why=_round_trips_why(single),
        ),
        _check(
            f"p95 end-to-end latency at {single['latencyMs']:g} ms injected",
            float(single["p95Seconds"]),
            targets.p95_seconds,
            at_least=False,
            unit=" s",
            why=_latency_why(single),
        ),
    ]


def _round_trips_why(single: Mapping[str, Any]) -> str:
    """Splits the measured mean into kinds called on every event and amortised reads (under one call per
    two events, e.g. the enrollment-group list that the engine caches per process, docs/engine.md)."""
    kinds = {str(k): float(v) for k, v in single.get("roundTripsByKind", {}).items()}
    every = {k: v for k, v in kinds.items() if v >= 0.5}
    amortised = {k: v for k, v in kinds.items() if v < 0.5}
    if not amortised:
        return f"all {len(every)} kinds of call happen on every event ({sum(every.values()):.2f} per event)"
    events = int(single.get("events", 0))
    listed = ", ".join(f"`{k}` {v:.2f} ({_calls(v * events)})" for k, v in sorted(amortised.items()))
    paced = float(single.get("pacedIntervalSeconds", 0.0)) * int(single.get("events", 0))
    return (
        f"{sum(every.values()):.2f} per event come from the {len(every)} kinds called on every event; "
        f"the other {sum(amortised.values()):.2f} are amortised reads: {listed} over the {paced:.0f} s "
        f"paced phase — a read the engine caches per process and repeats when its cache expires"
    )


def _calls(n: float) -> str:
    return f"{n:.0f} call" if round(n) == 1 else f"{n:.0f} calls"


def _latency_why(single: Mapping[str, Any]) -> str:
    """How much of the p95 the injected latency explains, from the measured round trips."""
    service = float(single["roundTripsPerEvent"]) * float(single["latencyMs"]) / 1000.0
    rest = float(single["p95Seconds"]) - service
    return (
        f"{single['roundTripsPerEvent']:.1f} sequential service round trips x {single['latencyMs']:g} ms "
        f"= {service:.3f} s of injected latency; the other {rest:.3f} s are queue polling, host dispatch, "
        f"journal writes to Azurite and client/emulator CPU on this {single.get('cpus', '?')}-CPU machine"
    )


# -- symmetric-key groups (issue 11, item 7) -----------------------------------------------------------------

SYMMETRIC_SIDES = ("engine", "engineBulk")
# A symmetric-key device costs two registry units on the bulk path: the GET that reads its keys (a bulk
# update must carry them) and its entry in the bulk write.
SYMMETRIC_OPS_PER_DEVICE = 2.0
# How far above its throttle floor a purge may finish and still count as paced by the budget alone (client
# work, TLS and the emulator's own time are the rest); a starving purge (issue 11: 7 failed attempts for 100
# devices) lands far above it.
FLOOR_MARGIN = 1.10


def symmetric_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's sides of one symmetric-key size; ``bulk`` names the side that measured the bulk path."""
    devices, factor = int(run["devices"]), float(run["timeCompression"])
    budget = S1_OPS_PER_MINUTE * int(run.get("units", 1))
    summary: dict[str, Any] = {"devices": devices, "timeCompression": factor, "hubs": int(run.get("hubs", 1)),
                               "attestation": run.get("attestation", "symmetricKey"),
                               "importJobThreshold": run.get("importJobThreshold")}
    for name in SYMMETRIC_SIDES:
        if name in run:
            side = side_summary(run[name], devices, factor, budget)
            side["realOverFloor"] = ratio(side["realSeconds"], side["throttleFloorRealSeconds"])
            summary[name] = side
    summary["bulk"] = "engineBulk" if "engineBulk" in summary else "engine"
    return summary


def symmetric_verdicts(summary: Mapping[str, Any]) -> list[Verdict]:
    """On the bulk path: real time within ``FLOOR_MARGIN`` of its own floor, every device purged, and at most
    two registry units per device (so the floor itself is not inflated by wasted reads or retries)."""
    devices, bulk = int(summary["devices"]), summary[summary["bulk"]]
    facts = (f"floor {_dur(bulk['throttleFloorRealSeconds'])} on {bulk['throttleFloorBucket']}, real "
             f"{_dur(bulk['realSeconds'])}, {bulk['http429']} 429s seen, {bulk['failed']} devices failed, "
             f"{bulk['bulkCalls']} bulk calls")
    why = "" if bulk["failed"] == 0 else f"{bulk['failed']} devices were not purged"
    return [
        _check(f"symmetric-key group, bulk path, {devices:,} devices: real service time ÷ throttle floor",
               bulk["realOverFloor"] if bulk["failed"] == 0 else math.inf, FLOOR_MARGIN, at_least=False,
               unit="x", why=why, note=facts),
        _check(f"throttled registry ops/device, symmetric-key bulk path, {devices:,} devices",
               bulk["registryOpsPerDevice"], SYMMETRIC_OPS_PER_DEVICE, at_least=False, unit="",
               note="one key read + one bulk-write entry per device"),
    ]
