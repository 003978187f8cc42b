"""A storm of single-device ``stolen`` events through the local Functions host, coalesced vs per-event
(issue 15, item 3).

Two phases on disjoint, freshly seeded devices (half individual symmetric-key enrollments, half members of a
symmetric-key enrollment group, round robin over the emulator's hubs): *coalesced* (``STORM_COALESCING=true``:
hub steps that find the hub's budget spent wait in its pending set and a flush applies them, by an import job
at ``STORM_JOB_THRESHOLD`` steps or more) and *per-event* (``false``: each event's hub step is one registry
call, paced by the hub's 429s). Each phase starts the real ``function_app.py`` under devhost in this process
(fresh services, its own queues and table prefix), queues every event at once and waits until every event is
terminal in the journal (or nothing is left to do and nothing moved for a while). Then it reads each event's
steps: when DPS refused the device (``EnrollmentDisabled`` / ``BlockingEnrollmentCreated`` done) and when its
hub did (``HubIdentityDisabled`` done), from the journal's ``at`` stamps, as wall seconds from the event's
enqueue and from the phase's first enqueue. ``bench.storm_report`` turns that into real service time (x F).

Emulator knobs: S1 x 1 unit, DPS throttle on, time compression F, no injected latency, the import/export job
model as given (default 10 s + 277.8 devices/s, real-service time). The app's registry budget
(``IOTHUB_REGISTRY_OPS_PER_MINUTE``) is the emulator's S1 budget as the host sees it: 100 x F per wall minute.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.emu import ROOT, EmulatorProcess
from bench.single import KEY_SETTINGS, _diff_calls

SEED_CHUNK = 5_000
SENDERS = 4
TERMINAL = frozenset({"completed", "failed", "refused", "rejected"})
DPS_REVOKED = frozenset({"EnrollmentDisabled", "BlockingEnrollmentCreated"})
HUB_REFUSED = frozenset({"HubIdentityDisabled", "HubIdentityDeleted"})
APPLIED = frozenset({"done", "already_done"})
IDLE_STOP_S = 300.0  # queues empty, nothing finished this long (wall s at F >= 1): nothing more will happen
# (a flush gathering its set for up to 120 s, then waiting on a job, finishes nothing for minutes, and the
# message it holds is invisible, so the queues look empty)
JOB_CREATE = "POST /jobs/create"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def seed_storm_devices(emu: EmulatorProcess, prefix: str, count: int) -> dict[str, Any]:
    """``count`` devices round robin over the hubs: even indices individual symmetric-key enrollments, odd
    ones members of the symmetric-key group ``<prefix>-group``; each with its registration record and its
    ``sas`` hub identity (admin API, no throttle)."""
    hubs, group = emu.hub_names, f"{prefix}-group"
    keys = {"primaryKey": _key(), "secondaryKey": _key()}
    emu.admin("POST", "seed", {"enrollments": [{
        "enrollmentGroupId": group, "provisioningStatus": "enabled",
        "attestation": {"type": "symmetricKey", "symmetricKey": keys},
    }]})
    ids = [f"{prefix}-{i:05d}" for i in range(count)]
    for start in range(0, count, SEED_CHUNK):
        chunk = range(start, min(count, start + SEED_CHUNK))
        emu.admin("POST", "seed", {
            "enrollments": [{"registrationId": ids[i], "provisioningStatus": "enabled",
                             "attestation": {"type": "symmetricKey"}} for i in chunk if i % 2 == 0],
            "registrations": [{"registrationId": ids[i], "deviceId": ids[i],
                               "assignedHub": hubs[i % len(hubs)],
                               **({"enrollmentGroupId": group} if i % 2 else {})} for i in chunk],
            "devices": [{"deviceId": ids[i], "hub": hubs[i % len(hubs)], "status": "enabled",
                         "authentication": {"type": "sas"}} for i in chunk],
        })
    return {"devices": ids, "groupMembers": count // 2, "group": group}


def stolen_event(event_id: str, registration_id: str) -> str:
    return json.dumps({"eventId": event_id, "type": "stolen", "registrationId": registration_id,
                       "occurredAt": "2025-06-01T09:30:00Z", "source": "bench-storm"})


def _epoch(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def step_times(record: Any) -> tuple[float | None, float | None]:
    """(DPS refused, hub refused) as epoch seconds from an ``EventRecord``'s applied steps."""
    dps = [_epoch(s.at) for s in record.steps if s.kind in DPS_REVOKED and s.outcome in APPLIED]
    hub = [_epoch(s.at) for s in record.steps if s.kind in HUB_REFUSED and s.outcome in APPLIED]
    dps_at = min((t for t in dps if t is not None), default=None)
    hub_at = max((t for t in hub if t is not None), default=None)
    return dps_at, hub_at


@contextmanager
def _own_environ(names: list[str]) -> Iterator[None]:
    """devhost never overrides a variable already set: take ours out for the phase, put them back after."""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _queue_length(storage: str, name: str) -> int:
    from azure.storage.queue import QueueClient

    try:
        client = QueueClient.from_connection_string(storage, name)
        return int(client.get_queue_properties().approximate_message_count or 0)
    except Exception:  # noqa: BLE001 - a queue not made yet holds nothing
        return 0


def _wait_terminal(journal: Any, wanted: set[str], *, timeout: float, poll: float,
                   queues_empty: Callable[[], bool], log: Callable[[str], None],
                   idle: float = IDLE_STOP_S) -> dict[str, str]:
    """eventId → terminal status; returns when all are terminal, at ``timeout``, or when the queues are
    empty and nothing finished for ``idle`` seconds (a stuck or poisoned event never finishes)."""
    found: dict[str, str] = {}
    deadline, last_change, last_log = time.monotonic() + timeout, time.monotonic(), time.monotonic()
    while time.monotonic() < deadline and len(found) < len(wanted):
        time.sleep(poll)
        before = len(found)
        for record in journal.iter_events():
            if record.event_id in wanted and record.status in TERMINAL:
                found[record.event_id] = record.status
        now = time.monotonic()
        if len(found) != before:
            last_change = now
        elif now - last_change > idle and queues_empty():
            log(f"    stopped waiting: queues empty, nothing finished for {idle:.0f} s")
            break
        if now - last_log > 30:
            log(f"    {len(found):,} / {len(wanted):,} events terminal")
            last_log = now
    return found


def _settings(emu: EmulatorProcess, storage: str, coalescing: bool, compression: float) -> dict[str, str]:
    from shared.adapters.settings import emulator_values

    suffix = uuid.uuid4().hex[:8]
    return {
        **emulator_values(emu.config_path, storage),
        "AzureWebJobsStorage": storage,
        "LIFECYCLE_QUEUE": f"storm-lc-{suffix}",
        "WORK_QUEUE": f"storm-wk-{suffix}",
        "JOURNAL_TABLE_PREFIX": f"s{suffix}",
        "STORM_COALESCING": "true" if coalescing else "false",
        "IOTHUB_REGISTRY_OPS_PER_MINUTE": f"{100.0 * compression:g}",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.1",
    }


def _send_all(send: Callable[[str], None], devices: list[str], run: str) -> dict[str, float]:
    """Queue one stolen event per device from a few threads; eventId → wall clock just before its send."""
    enqueued: dict[str, float] = {}

    def one(pair: tuple[int, str]) -> None:
        event_id = f"storm-{run}-{pair[0]:05d}"
        enqueued[event_id] = time.time()
        send(stolen_event(event_id, pair[1]))

    one((0, devices[0]))  # creates the queue once, before the threads
    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        list(pool.map(one, enumerate(devices[1:], start=1)))
    return enqueued


def _units(counters: dict[str, Any], service: str, bucket: str) -> float:
    return float(counters.get("units", {}).get(service, {}).get(bucket, 0.0))


def _emulator_diff(before: dict[str, Any], after: dict[str, Any], hubs: list[str]) -> dict[str, Any]:
    calls = _diff_calls(before, after)
    status429 = sum(n for svc, ops in after.get("calls", {}).items() for op, st in ops.items()
                    for code, n in st.items() if code == "429") - sum(
        n for svc, ops in before.get("calls", {}).items() for op, st in ops.items()
        for code, n in st.items() if code == "429")
    jobs = {h: list(after.get("jobs", {}).get(h, []))[len(before.get("jobs", {}).get(h, [])):] for h in hubs}
    return {
        "dpsUnits": _units(after, "dps", "dpsService") - _units(before, "dps", "dpsService"),
        "registryUnitsByHub": {h: _units(after, h, "registry") - _units(before, h, "registry") for h in hubs},
        "jobsUnitsByHub": {h: _units(after, h, "jobs") - _units(before, h, "jobs") for h in hubs},
        "importJobs": sum(n for key, n in calls.items() if key.endswith(JOB_CREATE)),
        "jobs": jobs,
        "http429": status429,
        "calls": calls,
    }


def _phase(emu: EmulatorProcess, storage: str, devices: list[str], *, coalescing: bool, compression: float,
           state_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from devhost.host import Host, HostOptions
    from shared.adapters.queues import StorageQueueSender
    from unprovision import wiring

    settings = _settings(emu, storage, coalescing, compression)
    events = len(devices)
    per_hub = -(-events // len(emu.hub_names))
    expected = max(2 * per_hub / 100.0, events * 4 / 1000.0) * 60.0  # real s: per-event registry or DPS
    timeout = 3 * expected / compression + 300 + events * 0.5
    for name in KEY_SETTINGS:  # explicit keys: devhost then prints none (the bench never needs them)
        os.environ.setdefault(name, secrets.token_urlsafe(24))
    before = emu.counters()
    with _own_environ(list(settings)):
        wiring.reset_services()
        host = Host(HostOptions(app_root=ROOT, settings_file=state_dir / "none.json", port=0,
                                state_dir=state_dir / "devhost", extra_settings=settings,
                                dev_storage=storage, run_timers=False)).start()
        try:
            journal = wiring.services().journal
            sender = StorageQueueSender(storage, settings["LIFECYCLE_QUEUE"])
            enqueued = _send_all(sender.send_text, devices, uuid.uuid4().hex[:6])
            sent = time.time()
            log(f"    queued {events:,} events in {sent - min(enqueued.values()):.1f} s")

            def empty() -> bool:
                names = (settings["LIFECYCLE_QUEUE"], settings["WORK_QUEUE"])
                return all(_queue_length(storage, name) == 0 for name in names)

            status = _wait_terminal(journal, set(enqueued), timeout=timeout, queues_empty=empty, log=log,
                                    poll=2.0 if events <= 1000 else 5.0,
                                    idle=IDLE_STOP_S / min(1.0, compression))  # F < 1: service time is slower
            after = emu.counters()
        finally:
            host.stop()
            wiring.reset_services()
    return {"mode": "coalesced" if coalescing else "perEvent", **_measure(journal, enqueued, status),
            **_emulator_diff(before, after, emu.hub_names)}


def _measure(journal: Any, enqueued: dict[str, float], status: dict[str, str]) -> dict[str, Any]:
    """Each event's DPS and hub refusal, relative to its own enqueue and to the phase's first one."""
    start = min(enqueued.values())
    ids = sorted(enqueued)
    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        records = list(pool.map(journal.get, ids))
    dps_latency: list[float | None] = []
    hub_latency: list[float | None] = []
    hub_since_start: list[float | None] = []
    for event_id, record in zip(ids, records, strict=True):
        dps_at, hub_at = step_times(record) if record is not None else (None, None)
        dps_latency.append(None if dps_at is None else dps_at - enqueued[event_id])
        hub_latency.append(None if hub_at is None else hub_at - enqueued[event_id])
        hub_since_start.append(None if hub_at is None else hub_at - start)
    last = max((t for t in hub_since_start if t is not None), default=0.0)
    return {
        "events": len(ids),
        "completed": sum(1 for s in status.values() if s == "completed"),
        "failed": sum(1 for s in status.values() if s != "completed"),
        "wallSeconds": last,
        "dpsLatency": dps_latency,
        "hubLatency": hub_latency,
        "hubSinceStart": hub_since_start,
    }


def run_storm(emu: EmulatorProcess, events: int, compression: float, state_dir: Path, *,
              storage: str | None = None, job_rate: float | None = None, job_start: float | None = None,
              log: Callable[[str], None] = lambda _l: None) -> dict[str, Any]:
    """Both phases on ``events`` fresh devices each; ``storage`` is a blob-capable account (the app's import
    jobs), else an Azurite with blob is started for the run. Returns the raw measurements."""
    from devhost.azurite import start_azurite
    from emulator.iothub.jobtiming import DEFAULT_DEVICES_PER_SECOND, DEFAULT_START_SECONDS
    from unprovision.storm.coalesce import DEFAULT_JOB_THRESHOLD

    rate = DEFAULT_DEVICES_PER_SECOND if job_rate is None else job_rate
    start = DEFAULT_START_SECONDS if job_start is None else job_start
    emu.reset()
    fleets = {"coalesced": seed_storm_devices(emu, "storm-c", events),
              "perEvent": seed_storm_devices(emu, "storm-p", events)}
    emu.set_knobs(tier="S1", units=1, dpsThrottle=True, timeCompression=compression, latencyMs=0,
                  jobDevicesPerSecond=rate, jobStartSeconds=start)  # after seeding (admin, never throttled)
    azurite = start_azurite(blob=True) if storage is None else None
    connection = storage or (azurite.connection_string if azurite else "")
    raw: dict[str, Any] = {
        "events": events, "hubs": len(emu.hub_names), "units": 1, "timeCompression": compression,
        "groupMembers": fleets["coalesced"]["groupMembers"], "jobDevicesPerSecond": rate,
        "jobStartSeconds": start, "appOpsPerMinute": 100.0 * compression,
        "jobThreshold": DEFAULT_JOB_THRESHOLD,
    }
    try:
        for name, coalescing in (("coalesced", True), ("perEvent", False)):
            log(f"  storm phase {name}: {events:,} stolen events at once")
            began = time.monotonic()
            raw[name] = _phase(emu, connection, fleets[name]["devices"], coalescing=coalescing,
                               compression=compression, state_dir=state_dir / f"storm-{name}", log=log)
            log(f"    done in {time.monotonic() - began:.0f} s wall")
    finally:
        if azurite is not None:
            azurite.stop()
    return raw
