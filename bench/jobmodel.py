"""Pure arithmetic and text for the import-job path in the report: the jobs' critical path, its share of the
real service time, the engine's time with slower jobs, and the job rate below which the speed-up target is
missed.

The emulator models a job as ``start + devices / rate`` seconds of real-service time (compressed by F while
the bench runs; ``emulator.iothub.jobtiming``) and records every ended job. A hub runs one job at a time
(IoT Hub allows one active import/export job per hub) and ``purge_group`` runs up to ``MAX_PARALLEL_JOBS``
hubs at once, so the critical path is the busiest hub's jobs times the rounds of hubs.

The engine reads the whole group from DPS before any job starts (the spool), so the DPS floor and the job
time add up; the hubs' ``jobs``-bucket floor (creates and polls) overlaps the jobs. The paced part is
therefore the larger of the throttle floor and DPS floor + jobs:

    paced = max(floor, dps_floor + jobs)        real = paced + rest,  rest = max(0, wall - paced / F)

``rest`` is what the run spent beyond its paced part (client work, blob traffic, poll lag), carried over
uncompressed. With jobs of another duration ``jobs'`` the same run takes ``max(floor, dps_floor + jobs') +
rest``; with ``c`` jobs in sequence carrying ``D`` devices in all, ``jobs(r) = c * start + D / r``, so the
engine stays within ``naive / target`` exactly when

    r ≥ D / (naive / target - rest - dps_floor - c * start)

and no rate is enough when that denominator is not positive or ``floor + rest`` alone exceeds naive ÷ target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# GroupWork.max_parallel_jobs default: hubs whose import jobs the engine runs at once.
MAX_PARALLEL_JOBS = 4
SLOWER = 10.0  # the sensitivity row: every job takes this many times as long


def critical_path(jobs_by_hub: Mapping[str, Sequence[Mapping[str, Any]]],
                  parallel: int = MAX_PARALLEL_JOBS) -> dict[str, float]:
    """``seconds`` (modelled, real-service time), ``devices`` and ``jobs`` on the critical path, from the
    emulator's records of ended jobs (``modelledRealSeconds``, ``devices`` each)."""
    hubs = [list(records) for records in jobs_by_hub.values() if records]
    if not hubs:
        return {"seconds": 0.0, "devices": 0.0, "jobs": 0.0}
    busiest = max(hubs, key=lambda records: sum(float(r["modelledRealSeconds"]) for r in records))
    rounds = math.ceil(len(hubs) / parallel)
    return {"seconds": rounds * sum(float(r["modelledRealSeconds"]) for r in busiest),
            "devices": rounds * sum(float(r["devices"]) for r in busiest),
            "jobs": float(rounds * len(busiest))}


def paced_seconds(floor: float, dps_floor: float, jobs: float) -> float:
    """Real seconds of the paced part of a run (see the module doc)."""
    return max(floor, dps_floor + jobs)


def with_jobs(side: Mapping[str, Any], jobs: float) -> float:
    """The side's real service time had its jobs on the critical path taken ``jobs`` seconds."""
    paced = paced_seconds(side["throttleFloorRealSeconds"], side["dpsFloorRealSeconds"], jobs)
    return paced + float(side["restSeconds"])


def break_even_rate(side: Mapping[str, Any], naive_real: float, target: float, start: float) -> float:
    """Devices per second (real-service time) below which the side's speed-up over ``naive_real`` falls
    under ``target``; ``inf`` when no rate is enough, NaN when the side ran no job."""
    devices, chain = float(side["jobDevicePasses"]), float(side["jobsInChain"])
    if devices <= 0:
        return math.nan
    allowed = naive_real / target
    rest, floor = float(side["restSeconds"]), float(side["throttleFloorRealSeconds"])
    budget = allowed - rest - float(side["dpsFloorRealSeconds"]) - chain * start
    if budget <= 0 or floor + rest > allowed:
        return math.inf
    return devices / budget


def duration(seconds: float) -> str:
    """Seconds for a sentence: minutes from two minutes up."""
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def jobs_note(summary: Mapping[str, Any], target: float) -> str:
    """The job model the real time rests on, its critical path, and how sensitive the verdict is to it."""
    engine, naive = summary["engine"], summary["naive"]
    jobs, hubs = engine["jobsCreated"], max(1, engine["importJobs"])
    parallel = min(hubs, MAX_PARALLEL_JOBS)
    rate, start = summary.get("jobDevicesPerSecond"), summary.get("jobStartSeconds")
    model = (f"{start:g} s start latency + devices ÷ {rate:.0f} devices/s" if rate and start is not None
             else "the emulator's job timing")
    text = (
        f"The engine purged {engine['importJobs']} hubs by import jobs ({jobs} jobs created, {parallel} hubs "
        f"at a time, {engine['jobsInChain']:.0f} jobs carrying {engine['jobDevicePasses']:,.0f} devices in "
        f"sequence on the critical path; {engine['jobsOps']:.0f} operations on the hubs' jobs budget, "
        f"{engine['registryOpsPerDevice']:.2f} registry ops/device). Each job was modelled as {model} "
        f"(real-service time, compressed by F like the throttle windows): "
        f"{duration(engine['jobsRealSeconds'])} of jobs on the critical path, after the DPS read "
        f"({duration(engine['dpsFloorRealSeconds'])}), within the engine's {duration(engine['realSeconds'])} "
        f"(≥ {target:g}x needs ≤ {duration(naive['realSeconds'] / target)})"
    )
    slower = summary.get("jobsSlower")
    if slower:
        text += (f". With jobs {slower['factor']:g}x slower the engine would take "
                 f"{duration(slower['engineRealSeconds'])}: {slower['speedupReal']:.1f}x")
    text += f". {break_even_text(summary.get('breakEvenJobRate', math.nan), rate, target)}"
    return text + f". The bulk path alone reached {summary['speedupBulkReal']:.2f}x"


def break_even_text(rate_needed: float, rate: float | None, target: float) -> str:
    """``break_even_rate``'s answer in words, against the rate the run modelled."""
    if math.isnan(rate_needed):
        return "No job ran on the critical path"
    if math.isinf(rate_needed):
        return (f"No job rate keeps the speed-up ≥ {target:g}x: the start latencies and the rest of the run "
                f"already take longer than naive ÷ {target:g}")
    share = f" ({rate_needed / rate:.0%} of the modelled rate)" if rate else ""
    return (f"The speed-up falls under {target:g}x when jobs handle fewer than {rate_needed:.0f} devices/s"
            f"{share}")
