"""Single-device events: lifecycle queue → local Functions host (devhost, in this process) → emulator.

Two phases on fresh devices each: *paced* (one event every ``interval`` seconds; end-to-end latency =
journal ``updated_at`` of the completed event - wall clock just before the enqueue) and *burst* (all events
at once; events/s = events ÷ (last completion - first enqueue), at the host's default queue concurrency).
Round trips per event = the emulator's call counters (DPS + hubs) during the paced phase ÷ events.

Deliberate settings (stated in the report): hub/DPS throttling off — latency is the subject, and S1 would
allow only 100 registry ops/min; ``maxPollingInterval`` 100 ms, because devhost backs off to 2 s when the
queue is idle and an idle poll delay is not processing latency (the host polls at once after its own writes).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.emu import ROOT, EmulatorProcess
from bench.report import percentile

POLL_S = 0.5
KEY_SETTINGS = ("DEVHOST_MASTER_KEY", "DEVHOST_FUNCTION_KEY")


def _seed_individuals(emu: EmulatorProcess, prefix: str, count: int) -> list[str]:
    hubs, ids = emu.hub_names, [f"{prefix}-{i:05d}" for i in range(count)]
    emu.admin(
        "POST",
        "seed",
        {
            "enrollments": [
                {
                    "registrationId": d,
                    "provisioningStatus": "enabled",
                    "attestation": {"type": "symmetricKey"},
                }
                for d in ids
            ],
            "registrations": [
                {"registrationId": d, "deviceId": d, "assignedHub": hubs[i % len(hubs)]}
                for i, d in enumerate(ids)
            ],
            "devices": [
                {
                    "deviceId": d,
                    "hub": hubs[i % len(hubs)],
                    "status": "enabled",
                    "authentication": {"type": "sas"},
                }
                for i, d in enumerate(ids)
            ],
        },
    )
    return ids


def _event(event_id: str, registration_id: str) -> str:
    return json.dumps(
        {
            "eventId": event_id,
            "type": "lost",
            "registrationId": registration_id,
            "occurredAt": "2025-06-01T09:30:00Z",
            "source": "bench",
        }
    )


def _finished_at(journal: Any, wanted: set[str], timeout: float) -> dict[str, tuple[str, float]]:
    """eventId → (status, finish time as epoch seconds) once every wanted event is terminal."""
    found: dict[str, tuple[str, float]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(found) < len(wanted):
        time.sleep(POLL_S)
        for status in ("completed", "failed", "refused"):
            for record in journal.iter_events(status=status):
                if record.event_id in wanted and record.updated_at:
                    stamp = datetime.fromisoformat(record.updated_at.replace("Z", "+00:00")).timestamp()
                    found[record.event_id] = (record.status, stamp)
    return found


def _phase(
    send: Callable[[str], None], journal: Any, devices: list[str], interval: float, timeout: float
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    enqueued: dict[str, float] = {}
    for device in devices:
        event_id = f"bench-{run}-{device}"
        enqueued[event_id] = time.time()
        send(_event(event_id, device))
        if interval:
            time.sleep(interval)
    done = _finished_at(journal, set(enqueued), timeout)
    latencies = [done[e][1] - enqueued[e] for e in enqueued if e in done]
    span = (max(t for _, t in done.values()) - min(enqueued.values())) if done else float("nan")
    return {
        "events": len(devices),
        "completed": sum(1 for s, _ in done.values() if s == "completed"),
        "latencies": latencies,
        "spanSeconds": span,
    }


def run_single(
    emu: EmulatorProcess, events: int, latency_ms: float, interval: float, state_dir: Path
) -> dict[str, Any]:
    from devhost.azurite import start_azurite
    from devhost.host import Host, HostOptions
    from shared.adapters.queues import StorageQueueSender
    from shared.adapters.settings import emulator_values
    from unprovision import wiring

    emu.reset()
    emu.set_knobs(tier="off", dpsThrottle=False, latencyMs=latency_ms)
    paced, burst = _seed_individuals(emu, "bench-p", events), _seed_individuals(emu, "bench-b", events)
    azurite = start_azurite()
    suffix = uuid.uuid4().hex[:8]
    settings = {
        **emulator_values(emu.config_path, azurite.connection_string),
        "AzureWebJobsStorage": azurite.connection_string,
        "LIFECYCLE_QUEUE": f"bench-lc-{suffix}",
        "WORK_QUEUE": f"bench-wk-{suffix}",
        "JOURNAL_TABLE_PREFIX": f"b{suffix}",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.1",
    }
    wiring.reset_services()
    for name in KEY_SETTINGS:  # explicit keys: devhost then prints none (the bench never needs them)
        os.environ.setdefault(name, secrets.token_urlsafe(24))
    host = Host(
        HostOptions(
            app_root=ROOT,
            settings_file=state_dir / "none.json",
            port=0,
            state_dir=state_dir / "devhost",
            extra_settings=settings,
            dev_storage=azurite.connection_string,
            run_timers=False,
        )
    ).start()
    try:
        queue = StorageQueueSender(azurite.connection_string, settings["LIFECYCLE_QUEUE"])
        journal = wiring.services().journal
        before = emu.counters()
        first = _phase(queue.send_text, journal, paced, interval, timeout=120 + events * interval)
        calls = _diff_calls(before, emu.counters())
        second = _phase(queue.send_text, journal, burst, 0.0, timeout=120 + events)
    finally:
        host.stop()
        wiring.reset_services()
        azurite.stop()
    return _summary(first, second, calls, events=events, latency_ms=latency_ms, interval=interval)


def _diff_calls(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """``"service METHOD /pattern": n`` answered during the phase (every status)."""
    out: dict[str, int] = {}
    for service, ops in after.get("calls", {}).items():
        for op, statuses in ops.items():
            old = before.get("calls", {}).get(service, {}).get(op, {})
            n = sum(statuses.values()) - sum(old.values())
            if n:
                out[f"{service} {op}"] = n
    return out


def _summary(
    first: dict[str, Any],
    second: dict[str, Any],
    calls: dict[str, int],
    *,
    events: int,
    latency_ms: float,
    interval: float,
) -> dict[str, Any]:
    lat = first["latencies"]
    per_kind: dict[str, float] = {}
    for key, n in calls.items():
        kind = key.split(" ", 1)[1]
        per_kind[kind] = per_kind.get(kind, 0.0) + n / events
    return {
        "events": events,
        "latencyMs": latency_ms,
        "pacedIntervalSeconds": interval,
        "completed": first["completed"],
        "burstCompleted": second["completed"],
        "p50Seconds": percentile(lat, 50),
        "p95Seconds": percentile(lat, 95),
        "maxSeconds": max(lat) if lat else float("nan"),
        "eventsPerSecond": second["completed"] / second["spanSeconds"] if second["completed"] else 0.0,
        "roundTripsPerEvent": sum(calls.values()) / events,
        "roundTripsByKind": per_kind,
    }
