"""How long an import/export job takes in the emulator (docs/azure-behaviour.md §9, emulator/README.md).

A job waits a start latency, then handles its devices at a steady rate. Both are given in *real-service*
time and divided by the time-compression factor F — the same F that shortens the throttle windows
(``emulator.knobs``) — so a benchmark that compresses throttling compresses jobs alike and can convert
either back with one factor.

Defaults and why:

* rate ≈ 278 devices/s: Microsoft's device-simulation service sized its job SAS tokens on "an S3 hub
  processes ~1M devices per hour" (Azure/device-simulation-dotnet PR 310), the only public figure found.
* start latency 10 s: no public figure exists. The create call answers ``enqueued`` (queued, not started)
  and Microsoft's bulk-identity sample polls every 5 s, so a job is expected to outlast a few seconds;
  10 s is two of those polls — long enough that a client assuming completion after one poll fails here,
  short next to the ~36 s a 10,000-device job needs at the default rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_DEVICES_PER_SECOND = 1_000_000 / 3600
DEFAULT_START_SECONDS = 10.0


def check_number(name: str, value: Any, *, positive: bool) -> float:
    """``value`` as a finite float, > 0 when ``positive`` else ≥ 0; TypeError/ValueError naming the knob
    otherwise."""
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{name} must be a number {bound}; got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number {bound}; got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    return number


@dataclass(frozen=True)
class JobTiming:
    """One job's timing, fixed when the job is created (later knob changes do not stretch it)."""

    devices_per_second: float = DEFAULT_DEVICES_PER_SECOND
    start_seconds: float = DEFAULT_START_SECONDS
    compression: float = 1.0

    def real_seconds(self, devices: int) -> float:
        """The modelled duration in real-service time: start latency + devices ÷ rate."""
        return self.start_seconds + devices / self.devices_per_second

    def start_delay(self) -> float:
        """Wall seconds the job stays ``enqueued`` here."""
        return self.start_seconds / self.compression

    def run_seconds(self, devices: int) -> float:
        """Wall seconds the job stays ``running`` here."""
        return devices / (self.devices_per_second * self.compression)

    def processed(self, devices: int, running_for: float) -> int:
        """Devices handled after ``running_for`` wall seconds of running (all of them at the modelled end,
        whatever the float rounding)."""
        if running_for >= self.run_seconds(devices):
            return devices
        return min(devices, int(running_for * self.devices_per_second * self.compression))
