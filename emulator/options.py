"""Start-up settings of the emulator (the CLI flags of ``python -m emulator``); ``emulator.server`` starts
from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.iothub.jobtiming import DEFAULT_DEVICES_PER_SECOND, DEFAULT_START_SECONDS


@dataclass(frozen=True)
class Options:
    """Start-up settings (the CLI flags of ``python -m emulator``)."""

    state_dir: Path
    hubs: int = 2
    host: str = "127.0.0.1"
    port: int = 0
    tier: str = "S1"
    units: int = 1
    time_compression: float = 1.0
    latency_ms: float = 0.0
    persist: bool = False
    dps_throttle: bool = True
    standard_ports: bool = False
    dps_retry_after: float = 1.0
    job_rate: float = DEFAULT_DEVICES_PER_SECOND  # import/export jobs, real-service time (jobtiming)
    job_start: float = DEFAULT_START_SECONDS

    def knob_defaults(self) -> dict[str, Any]:
        return {"tier": self.tier, "units": self.units, "timeCompression": self.time_compression,
                "latencyMs": self.latency_ms, "jitterMs": 0.0, "dpsThrottle": self.dps_throttle,
                "jobDevicesPerSecond": self.job_rate, "jobStartSeconds": self.job_start}
