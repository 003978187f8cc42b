"""Realism knobs the server applies around every service call: latency, faults, throttling, counters.

Throttling follows docs/azure-behaviour.md §8 as a fixed-window counter per (service, bucket); windows last
60 s divided by the time-compression factor, so a test can exhaust and refill a per-minute budget in a
fraction of a second. Bulk registry calls cost one unit per device (H1). Not pinned by a documented
source: IoT Hub's traffic shaping (queueing before rejecting) is not modelled — over-budget calls get
429 at once, with ``Retry-After`` = seconds until the window ends (at least 1).

Import/export jobs take time on the same compressed clock (``emulator.iothub.jobtiming``): the knobs hold
their rate and start latency, hand each new job a ``JobTiming`` and keep a record of the jobs that ended
(``counters()["jobs"]``), so a benchmark can read what each job modelled.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.http import ServiceError
from emulator.iothub.jobtiming import (
    DEFAULT_DEVICES_PER_SECOND,
    DEFAULT_START_SECONDS,
    JobTiming,
    check_number,
)

# Per-minute budgets by tier (docs/azure-behaviour.md §8.1).
_HUB_TIERS: dict[str, dict[str, tuple[float, float]]] = {
    # bucket: (per unit per minute, floor per minute)
    "S1": {"registry": (100, 0), "query": (20, 0), "jobs": (100, 0), "twinRead": (0, 6000),
           "twinUpdate": (0, 3000)},
    "S2": {"registry": (100, 0), "query": (20, 0), "jobs": (100, 0), "twinRead": (600, 6000),
           "twinUpdate": (300, 3000)},
    "S3": {"registry": (5000, 0), "query": (1000, 0), "jobs": (5000, 0), "twinRead": (30000, 0),
           "twinUpdate": (15000, 0)},
}
_HUB_TIERS["F1"] = _HUB_TIERS["S1"]
_HUB_TIERS["B1"], _HUB_TIERS["B2"], _HUB_TIERS["B3"] = _HUB_TIERS["S1"], _HUB_TIERS["S2"], _HUB_TIERS["S3"]
DPS_LIMITS = {"dpsService": 1000.0, "dpsRegistration": 1000.0}


def hub_limits(tier: str, units: int) -> dict[str, float]:
    """Per-minute budgets of one hub; empty (unlimited) for tier ``off``."""
    table = _HUB_TIERS.get(tier.upper())
    if table is None:
        return {}
    return {bucket: max(per_unit * units, floor) for bucket, (per_unit, floor) in table.items()}


@dataclass(frozen=True)
class FaultConfig:
    """Random failures. ``paths``: regexes searched in the request path (empty = all); ``methods``: filter."""

    rate5xx: float = 0.0
    rate429: float = 0.0
    rateDrop: float = 0.0  # noqa: N815 - wire name of the admin API
    status5xx: int = 503
    retryAfter: int | None = 1  # noqa: N815
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("paths", "methods", "services"):
            if key in known:
                known[key] = tuple(known[key] or ())
        return cls(**known)

    def applies(self, service: str, method: str, path: str) -> bool:
        if self.services and service not in self.services:
            return False
        if self.methods and method.upper() not in {m.upper() for m in self.methods}:
            return False
        return not self.paths or any(re.search(p, path) for p in self.paths)


def _number(positive: bool) -> Any:
    return lambda key, value: check_number(key, value, positive=positive)


def _units(key: str, value: Any) -> int:
    number = check_number(key, value, positive=True)
    if number != int(number):
        raise ValueError(f"{key} must be a whole number > 0; got {value!r}")
    return int(number)


# admin/CLI key -> (attribute, checked conversion); F and the job rate divide time, so they must be > 0
_SETTINGS: dict[str, tuple[str, Any]] = {
    "timeCompression": ("time_compression", _number(True)),
    "latencyMs": ("latency_ms", _number(False)),
    "jitterMs": ("jitter_ms", _number(False)),
    "tier": ("hub_tier", lambda _key, value: str(value)),
    "units": ("hub_units", _units),
    "dpsThrottle": ("dps_throttle", lambda _key, value: bool(value)),
    "jobDevicesPerSecond": ("job_rate", _number(True)),
    "jobStartSeconds": ("job_start", _number(False)),
}


@dataclass(frozen=True)
class Decision:
    """What the server must do instead of dispatching: ``throttle``, ``fault5xx``, ``fault429``, ``drop``."""

    kind: str
    status: int = 0
    retry_after: int | None = None


@dataclass
class _Window:
    start: float = 0.0
    used: float = 0.0


@dataclass
class Knobs:
    """All knob settings and live counters; every method is thread-safe."""

    time_compression: float = 1.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    hub_tier: str = "off"
    hub_units: int = 1
    dps_throttle: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    job_rate: float = DEFAULT_DEVICES_PER_SECOND
    job_start: float = DEFAULT_START_SECONDS
    _limits: dict[str, dict[str, float]] = field(default_factory=dict)
    _windows: dict[tuple[str, str], _Window] = field(default_factory=lambda: defaultdict(_Window))
    _counters: dict[str, dict[str, dict[str, int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(int))))
    _units: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    _jobs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default_factory=random.Random)

    @property
    def window_seconds(self) -> float:
        return 60.0 / max(self.time_compression, 1e-6)

    def configure_limits(self, hubs: list[str]) -> None:
        """Recompute the per-service budgets from tier/units (call after changing them)."""
        with self._lock:
            self._limits = {hub: hub_limits(self.hub_tier, self.hub_units) for hub in hubs}
            self._limits["dps"] = dict(DPS_LIMITS) if self.dps_throttle else {}
            self._windows.clear()

    def update(self, data: dict[str, Any], hubs: list[str]) -> None:
        """Apply an admin/CLI settings dict (keys as in ``settings()``). Every value is checked before any
        is applied, so a bad one changes nothing: 400 ``BadRequest`` naming the knob."""
        try:
            values = {attr: check(key, data[key]) for key, (attr, check) in _SETTINGS.items() if key in data}
            faults = FaultConfig.from_dict(data["faults"] or {}) if "faults" in data else self.faults
        except (TypeError, ValueError) as exc:
            raise ServiceError(400, "BadRequest", str(exc)) from exc
        for attr, value in values.items():
            setattr(self, attr, value)
        self.faults = faults
        self.configure_limits(hubs)

    def job_timing(self) -> JobTiming:
        """The timing a job created now gets (rate and start latency in real time, compressed by F)."""
        return JobTiming(self.job_rate, self.job_start, self.time_compression)

    def record_job(self, hub: str, summary: dict[str, Any]) -> None:
        """Keep what an ended job modelled (``counters()["jobs"]``); cleared with the counters."""
        with self._lock:
            self._jobs[hub].append(dict(summary))

    def settings(self) -> dict[str, Any]:
        return {"timeCompression": self.time_compression, "windowSeconds": self.window_seconds,
                "latencyMs": self.latency_ms, "jitterMs": self.jitter_ms, "tier": self.hub_tier,
                "units": self.hub_units, "dpsThrottle": self.dps_throttle, "faults": asdict(self.faults),
                "jobDevicesPerSecond": self.job_rate, "jobStartSeconds": self.job_start,
                "limitsPerMinute": {k: dict(v) for k, v in self._limits.items()}}

    def delay(self) -> float:
        """Seconds to sleep before answering (latency + uniform jitter)."""
        jitter = self._rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0
        return max(self.latency_ms + jitter, 0.0) / 1000.0

    def decide(self, service: str, method: str, path: str, bucket: str, units: float) -> Decision | None:
        """Faults first, then the throttle; None means dispatch normally (and the units are consumed)."""
        fault = self._fault(service, method, path)
        if fault is not None:
            return fault
        return self._throttle(service, bucket, units)

    def _fault(self, service: str, method: str, path: str) -> Decision | None:
        faults = self.faults
        if not faults.applies(service, method, path):
            return None
        roll = self._rng.random()
        if roll < faults.rateDrop:
            return Decision("drop")
        if roll < faults.rateDrop + faults.rate429:
            return Decision("fault429", 429, faults.retryAfter)
        if roll < faults.rateDrop + faults.rate429 + faults.rate5xx:
            return Decision("fault5xx", faults.status5xx)
        return None

    def _throttle(self, service: str, bucket: str, units: float) -> Decision | None:
        limit = self._limits.get(service, {}).get(bucket)
        now = time.monotonic()
        with self._lock:
            self._units[service][bucket] += units
            if limit is None:
                return None
            window = self._windows[(service, bucket)]
            if now - window.start >= self.window_seconds:
                window.start, window.used = now, 0.0
            if window.used + units > limit:
                self._units[service][bucket] -= units
                remaining = self.window_seconds - (now - window.start)
                return Decision("throttle", 429, max(1, math.ceil(remaining)))
            window.used += units
        return None

    def count(self, service: str, operation: str, status: int, units: float = 1) -> None:
        """Record one answered call; registry operations count ``units`` (devices) per call."""
        with self._lock:
            self._counters[service][operation][str(status)] += int(units) if units >= 1 else 1

    def counters(self) -> dict[str, Any]:
        with self._lock:
            calls = {s: {op: dict(st) for op, st in ops.items()} for s, ops in self._counters.items()}
            units = {s: dict(b) for s, b in self._units.items()}
            jobs = {hub: [dict(j) for j in ended] for hub, ended in self._jobs.items()}
        return {"timeCompression": self.time_compression, "windowSeconds": self.window_seconds,
                "calls": calls, "units": units, "jobs": jobs}

    def reset(self, hubs: list[str], defaults: dict[str, Any]) -> None:
        """Back to the start-up settings ``defaults`` (a ``settings()``-shaped dict); counters cleared."""
        with self._lock:
            self._counters.clear()
            self._units.clear()
            self._jobs.clear()
        self.faults = FaultConfig()
        self.update(defaults, hubs)
