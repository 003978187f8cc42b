"""Group purge, engine vs naive baseline, on the same emulator settings; and the memory runs.

Each side: reset the emulator, set the knobs, seed the fleet, run the side in a subprocess, read the
emulator's counters. The engine's limiter is sized to the *compressed* S1 budget (100 ops per window per
unit, window = 60 s / factor) times a safety margin, because the emulator's fixed windows do not line up
with the token bucket's refill (a call sent exactly at the refill instant can land in the old window).

The engine runs as the product runs in process: with the import-job factory over a blob-capable storage
account (``GroupSettings.storage``) and the product's threshold. When that run made import jobs, the same
size is measured again with the factory left out (side ``engineBulk``), so bulk, import jobs and the naive
baseline stand side by side. Emulator units are kept per service and bucket: a job's calls count against
the hub's ``jobs`` bucket, bulk calls against ``registry`` (one unit per device).

Jobs take time in the emulator (start latency, then devices per second, both in real-service time and
compressed by the same F as the throttle windows); the throttled sides set both explicitly
(``GroupSettings.job_rate``/``job_start``) and every side reports the emulator's record of its jobs
(device count and modelled real duration), from which the report builds the jobs' critical path. The
memory runs make jobs instant: memory does not depend on how long a job waits.

``symmetric_run`` measures a symmetric-key group (issue 11, item 7): a bulk disable must first read each
device's keys (one registry GET per device, paid from the same per-hub budget before it is spent), so the
bulk path spends two registry units per device. It runs the engine only (as the product runs it, and on the
bulk path alone when that made import jobs); what it is judged against is its own throttle floor, not the
naive baseline, whose per-device get + update is the same for either kind of group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Any

from bench.emu import ROOT, EmulatorProcess
from bench.seed import GROUP_ID, seed_fleet
from emulator.iothub.jobtiming import DEFAULT_DEVICES_PER_SECOND, DEFAULT_START_SECONDS

S1_PER_UNIT = 100.0
CHILD_TIMEOUT_S = 1800
INSTANT_JOBS = {"jobStartSeconds": 0, "jobDevicesPerSecond": 1e6}


@dataclass(frozen=True)
class GroupSettings:
    """Knobs shared by both sides of one comparison."""

    action: str = "disable"
    time_compression: float = 60.0
    tier: str = "S1"
    units: int = 1
    limiter_margin: float = 0.95
    naive_sample: int = 1000
    max_in_flight: int = 2
    storage: str | None = field(default=None, repr=False)  # blob-capable connection string: import jobs on
    import_job_threshold: int | None = None  # None: the product default (GROUP_IMPORT_JOB_THRESHOLD)
    import_jobs: bool = True
    attestation: str = "x509"  # the group's kind: x509 | symmetricKey (bench.seed)
    job_rate: float = DEFAULT_DEVICES_PER_SECOND  # import/export jobs: devices/s, real-service time
    job_start: float = DEFAULT_START_SECONDS  # seconds a job waits before it runs, real-service time


def run_child(emu: EmulatorProcess, settings: dict[str, Any]) -> dict[str, Any]:
    """``python -m bench.purge_child``; its last stdout line is the JSON result."""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.purge_child", str(emu.config_path)],
        input=json.dumps(settings),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"{settings['side']} side failed: " + " | ".join(tail))
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def emulator_view(counters: dict[str, Any], hubs: list[str]) -> dict[str, Any]:
    """Units spent per service and bucket (accepted calls only: a 429 spends nothing), the jobs that ended
    (per hub: type, devices, modelled real seconds) and the raw counters. ``registryUnitsByHub`` is the
    hubs' ``registry`` bucket (bulk calls count one unit per device)."""
    raw = counters.get("units", {})
    units = {svc: {b: float(n) for b, n in buckets.items()} for svc, buckets in raw.items()}
    registry = {hub: units.get(hub, {}).get("registry", 0.0) for hub in hubs}
    jobs = {hub: list(counters.get("jobs", {}).get(hub, [])) for hub in hubs}
    return {"registryUnitsByHub": registry, "units": units, "jobs": jobs, "calls": counters.get("calls", {})}


def _spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for svc, buckets in after["units"].items():
        old = before["units"].get(svc, {})
        diff = {b: n - old.get(b, 0.0) for b, n in buckets.items() if n - old.get(b, 0.0)}
        if diff:
            out[svc] = diff
    return out


def _prepare(emu: EmulatorProcess, devices: int, knobs: dict[str, Any], attestation: str) -> dict[str, Any]:
    """Reset, seed, set the knobs; returns the emulator's per-minute limits by service and bucket."""
    emu.reset()
    seed_fleet(emu, devices, attestation)
    settings = emu.set_knobs(**knobs)  # after seeding: seeding goes through the admin API, never throttled
    return dict(settings.get("limitsPerMinute", {}))


def measure_side(
    emu: EmulatorProcess, devices: int, side: str, cfg: GroupSettings, knobs: dict[str, Any]
) -> dict[str, Any]:
    """Seed ``devices``, run one side, attach the emulator's view of it."""
    limits = _prepare(emu, devices, knobs, cfg.attestation)
    before = emulator_view(emu.counters(), emu.hub_names)
    window_budget = S1_PER_UNIT * cfg.units
    throttled = knobs.get("tier", "S1") != "off"
    per_minute = window_budget * cfg.time_compression * cfg.limiter_margin
    settings: dict[str, Any] = {
        "side": side,
        "groupId": GROUP_ID,
        "action": cfg.action,
        "sample": min(devices, cfg.naive_sample),
        "limiterOpsPerMinute": per_minute if throttled else 1e12,
        "limiterBurst": window_budget if throttled else 1e12,
        "maxInFlight": cfg.max_in_flight,
        "importJobs": cfg.import_jobs and cfg.storage is not None,
        "storage": cfg.storage,
        "importJobThreshold": cfg.import_job_threshold,
    }
    result = run_child(emu, settings)
    after = emulator_view(emu.counters(), emu.hub_names)
    spent = {
        hub: after["registryUnitsByHub"][hub] - before["registryUnitsByHub"][hub] for hub in emu.hub_names
    }
    jobs = {hub: after["jobs"][hub][len(before["jobs"][hub]):] for hub in emu.hub_names}
    result["emulator"] = {
        "registryUnitsByHub": spent, "units": _spent(before, after), "calls": after["calls"],
        "limitsPerMinute": limits, "jobs": jobs,
    }
    result["seeded"] = devices
    return result


def _throttled_knobs(cfg: GroupSettings) -> dict[str, Any]:
    return {
        "tier": cfg.tier,
        "units": cfg.units,
        "timeCompression": cfg.time_compression,
        "dpsThrottle": True,
        "latencyMs": 0,
        "jobDevicesPerSecond": cfg.job_rate,
        "jobStartSeconds": cfg.job_start,
    }


def compare(emu: EmulatorProcess, devices: int, cfg: GroupSettings) -> dict[str, Any]:
    """All sides at one size, same knobs: engine as the product runs it, engine on the bulk path alone
    (only when the first made import jobs), naive."""
    knobs = _throttled_knobs(cfg)
    engine = measure_side(emu, devices, "engine", cfg, knobs)
    sides = {"engine": engine}
    if engine.get("importJobs"):
        sides["engineBulk"] = measure_side(emu, devices, "engine", replace(cfg, import_jobs=False), knobs)
    sides["naive"] = measure_side(emu, devices, "naive", cfg, knobs)
    return {
        "devices": devices,
        "hubs": len(emu.hub_names),
        "action": cfg.action,
        "tier": cfg.tier,
        "units": cfg.units,
        "timeCompression": cfg.time_compression,
        "limiterMargin": cfg.limiter_margin,
        "importJobThreshold": engine.get("importJobThreshold"),
        "jobDevicesPerSecond": cfg.job_rate,
        "jobStartSeconds": cfg.job_start,
        **sides,
    }


def symmetric_run(emu: EmulatorProcess, devices: int, cfg: GroupSettings) -> dict[str, Any]:
    """A symmetric-key group of ``devices``, action disable, on the same throttled knobs as ``compare``:
    the engine as the product runs it, and on the bulk path alone when that made import jobs."""
    side = replace(cfg, attestation="symmetricKey", action="disable")
    knobs = _throttled_knobs(side)
    engine = measure_side(emu, devices, "engine", side, knobs)
    sides = {"engine": engine}
    if engine.get("importJobs"):
        sides["engineBulk"] = measure_side(emu, devices, "engine", replace(side, import_jobs=False), knobs)
    return {
        "devices": devices,
        "hubs": len(emu.hub_names),
        "attestation": "symmetricKey",
        "action": side.action,
        "tier": side.tier,
        "units": side.units,
        "timeCompression": side.time_compression,
        "limiterMargin": side.limiter_margin,
        "importJobThreshold": engine.get("importJobThreshold"),
        "jobDevicesPerSecond": side.job_rate,
        "jobStartSeconds": side.job_start,
        **sides,
    }


MEMORY_PATHS = ("bulk", "product")


def memory_run(emu: EmulatorProcess, devices: int, cfg: GroupSettings, path: str = "bulk") -> dict[str, Any]:
    """Engine only, throttling off and jobs instant (memory depends on neither pacing nor a job's wait; keeps
    100k short).

    * ``bulk``: the bulk path alone, action ``delete`` (the series of the earlier published runs): the
      engine holds <=100-ID batches, at most ``max_in_flight + 1`` per hub.
    * ``product``: as the product runs, action ``cfg.action``: hubs at or above the import-job threshold
      take jobs. A disable job holds the set of the hub's group device IDs and the rewritten lines
      (docs/engine-integration.md, Limits), so its memory grows with the group; this run measures by how
      much.
    """
    knobs = {"tier": "off", "dpsThrottle": False, "timeCompression": 1, "latencyMs": 0, **INSTANT_JOBS}
    side = replace(cfg, action="delete", import_jobs=False) if path == "bulk" else cfg
    result = measure_side(emu, devices, "engine", side, knobs)
    return {
        "devices": devices,
        "path": path,
        "action": side.action,
        "wallSeconds": result["wallSeconds"],
        "peakRssMb": result["peakRssMb"],
        "baselineRssMb": result["baselineRssMb"],
        "purged": result["devices"],
        "failed": result["failed"],
        "bulkCalls": result["bulkCalls"],
        "importJobs": result.get("importJobs", 0),
    }
