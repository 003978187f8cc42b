"""Group purge, engine vs naive baseline, on the same emulator settings; and the memory runs.

Each side: reset the emulator, set the knobs, seed the fleet, run the side in a subprocess, read the
emulator's counters. The engine's limiter is sized to the *compressed* S1 budget (100 ops per window per
unit, window = 60 s / factor) times a safety margin, because the emulator's fixed windows do not line up
with the token bucket's refill (a call sent exactly at the refill instant can land in the old window).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from typing import Any

from bench.emu import ROOT, EmulatorProcess
from bench.seed import GROUP_ID, seed_fleet

S1_PER_UNIT = 100.0
CHILD_TIMEOUT_S = 1800


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
    """Registry units spent per hub (accepted calls only: a 429 spends nothing) and the raw counters."""
    units = counters.get("units", {})
    registry = {hub: float(units.get(hub, {}).get("registry", 0.0)) for hub in hubs}
    return {"registryUnitsByHub": registry, "calls": counters.get("calls", {})}


def _prepare(emu: EmulatorProcess, devices: int, knobs: dict[str, Any]) -> None:
    emu.reset()
    seed_fleet(emu, devices)
    emu.set_knobs(**knobs)  # after seeding: seeding goes through the admin API, never throttled anyway


def measure_side(
    emu: EmulatorProcess, devices: int, side: str, cfg: GroupSettings, knobs: dict[str, Any]
) -> dict[str, Any]:
    """Seed ``devices``, run one side, attach the emulator's view of it."""
    _prepare(emu, devices, knobs)
    before = emulator_view(emu.counters(), emu.hub_names)
    window_budget = S1_PER_UNIT * cfg.units
    settings: dict[str, Any] = {
        "side": side,
        "groupId": GROUP_ID,
        "action": cfg.action,
        "sample": min(devices, cfg.naive_sample),
        "limiterOpsPerMinute": window_budget * cfg.time_compression * cfg.limiter_margin
        if knobs.get("tier", "S1") != "off"
        else 1e12,
        "limiterBurst": window_budget if knobs.get("tier", "S1") != "off" else 1e12,
        "maxInFlight": cfg.max_in_flight,
    }
    result = run_child(emu, settings)
    after = emulator_view(emu.counters(), emu.hub_names)
    spent = {
        hub: after["registryUnitsByHub"][hub] - before["registryUnitsByHub"][hub] for hub in emu.hub_names
    }
    result["emulator"] = {"registryUnitsByHub": spent, "calls": after["calls"]}
    result["seeded"] = devices
    return result


def compare(emu: EmulatorProcess, devices: int, cfg: GroupSettings) -> dict[str, Any]:
    """Both sides at one size, same knobs."""
    knobs = {
        "tier": cfg.tier,
        "units": cfg.units,
        "timeCompression": cfg.time_compression,
        "dpsThrottle": True,
        "latencyMs": 0,
    }
    engine = measure_side(emu, devices, "engine", cfg, knobs)
    naive = measure_side(emu, devices, "naive", cfg, knobs)
    return {
        "devices": devices,
        "hubs": len(emu.hub_names),
        "action": cfg.action,
        "tier": cfg.tier,
        "units": cfg.units,
        "timeCompression": cfg.time_compression,
        "limiterMargin": cfg.limiter_margin,
        "engine": engine,
        "naive": naive,
    }


def memory_run(emu: EmulatorProcess, devices: int, cfg: GroupSettings) -> dict[str, Any]:
    """Engine only, throttling off (memory does not depend on pacing; keeps 100k short), action ``delete``:
    the emulator answers each ``deviceId IN [...]`` query of the disable path by building every twin of the
    hub (O(registry) per batch), which makes a 100k disable take ~17 min on the emulator alone. The engine
    holds the same <=100-ID batches either way; disable adds at most 100 query twins per in-flight batch."""
    knobs = {"tier": "off", "dpsThrottle": False, "timeCompression": 1, "latencyMs": 0}
    result = measure_side(emu, devices, "engine", replace(cfg, action="delete"), knobs)
    return {
        "devices": devices,
        "action": "delete",
        "wallSeconds": result["wallSeconds"],
        "peakRssMb": result["peakRssMb"],
        "baselineRssMb": result["baselineRssMb"],
        "purged": result["devices"],
        "failed": result["failed"],
        "bulkCalls": result["bulkCalls"],
    }
