"""Storm coalescing as the app wires it: ``wiring.build_services`` over the emulator and a blob Azurite.

A burst of ``stolen`` events for single devices on one hub whose budget is small: the first events spend
the budget and are applied at once, the rest revoke DPS at once and wait in the hub's pending set (Table
storage); the flush message in the work queue (Azurite) drains the set by one export + one import job
(the emulator's call counters show ``POST /jobs/create``) and finishes every event. No fakes.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import AzuriteHandle
from shared.adapters.queues import queue_client
from shared.adapters.settings import (
    IOTHUB_REGISTRY_OPS_PER_MINUTE,
    STORM_JOB_THRESHOLD,
    WORK_QUEUE,
    from_emulator,
)
from shared.lifecycle import EventStatus
from tests.integration import engine_fleet as fleet
from tests.support.azurite_fixtures import unique_prefix
from unprovision import service, wiring
from unprovision.storm.coalesce import PENDING_AFTER

pytestmark = pytest.mark.slow

BUDGET = 20  # events the hub's budget pays directly (2 ops each: the planner's read and the write)
EVENTS = 50
JOB = "POST /jobs/create"



def storm_services(emu: Any, blobs: AzuriteHandle, tmp_path: Path, **values: str) -> wiring.Services:
    config = tmp_path / "emulator.json"
    config.write_text(json.dumps(emu.config), encoding="utf-8")
    base = {IOTHUB_REGISTRY_OPS_PER_MINUTE: str(2 * BUDGET), STORM_JOB_THRESHOLD: "10",
            WORK_QUEUE: f"storm-work-{uuid.uuid4().hex[:8]}", **values}
    settings = from_emulator(config, blobs.connection_string, base=base)
    services = wiring.build_services(settings, table_prefix=unique_prefix(), environ={})
    assert services.engine.storm is not None, "a work queue and journal storage enable storm coalescing"
    return services


def seed_devices(emu: Any, count: int) -> list[str]:
    """Symmetric-key individual enrollments, all assigned to the first hub, with their identities."""
    hub = emu.hubs[0]
    ids = [f"storm-{uuid.uuid4().hex[:6]}-{n:03d}" for n in range(count)]
    emu.admin("POST", "/seed", json={
        "enrollments": [{"registrationId": d, "provisioningStatus": "enabled",
                         "attestation": {"type": "symmetricKey"}} for d in ids],
        "registrations": [{"registrationId": d, "deviceId": d, "assignedHub": hub["hostName"]} for d in ids],
        "devices": {hub["name"]: [{"deviceId": d, "status": "enabled", "authentication": {"type": "sas"}}
                                  for d in ids]},
    })
    return ids


def stolen(device_id: str) -> str:
    return json.dumps({"eventId": f"st-{device_id}", "type": "stolen", "registrationId": device_id,
                       "occurredAt": fleet.OCCURRED_AT, "source": "storm-test"})


def drain_work_queue(services: wiring.Services) -> int:
    """Deliver every work message (and any sent meanwhile) to the work-queue entry, as the host would."""
    client = queue_client(wiring.storage_connection_string(services.settings, {}) or "",
                          services.settings.work_queue)
    handled = 0
    while batch := list(client.receive_messages(max_messages=32, visibility_timeout=60)):
        for message in batch:
            service.handle_work_batch(str(message.content), services)
            client.delete_message(message)
            handled += 1
    return handled


def jobs_created(emu: Any) -> int:
    calls = emu.admin("GET", "counters")["calls"]
    return sum(calls.get(emu.hubs[0]["name"], {}).get(JOB, {}).values())


def test_a_burst_beyond_the_budget_waits_with_dps_revoked_and_one_flush_applies_it_by_jobs(
        clean_emulator: Any, blob_store: AzuriteHandle, tmp_path: Path) -> None:
    emu = clean_emulator
    emu.admin("PUT", "/jobs", {"jobStartSeconds": 0, "jobDevicesPerSecond": 1e6})  # wiring, not job timing
    services = storm_services(emu, blob_store, tmp_path)
    devices = seed_devices(emu, EVENTS)
    outcomes = [service.handle_event_body(stolen(d), services) for d in devices]
    waiting = [d for d, o in zip(devices, outcomes, strict=True) if o.status == EventStatus.IN_PROGRESS]
    # the budget refills while the burst runs: a few more events may go the direct way
    assert EVENTS - BUDGET - 10 <= len(waiting) <= EVENTS - BUDGET
    assert all(fleet.enrollment_status(emu, d) == "disabled" for d in devices)  # DPS first, at once
    hub = emu.hubs[0]["hostName"]
    before = fleet.hub_statuses(emu, 0)  # the admin dump: no registry budget spent
    assert all(before[d] == "enabled" for d in waiting)
    record = services.journal.get(f"st-{waiting[0]}")
    assert record is not None
    assert record.steps[-1].after == PENDING_AFTER

    drain_work_queue(services)

    after = fleet.hub_statuses(emu, 0)
    assert all(after[d] == "disabled" for d in devices)
    assert jobs_created(emu) == 2  # one export (for the eTags) and one import, for every waiting step
    for device_id in waiting:
        final = services.journal.get(f"st-{device_id}")
        assert final is not None
        assert final.status == EventStatus.COMPLETED
        assert (final.steps[-1].after or "").startswith("import job ")
    assert list(services.engine.storm.pending.entries(hub)) == []  # type: ignore[union-attr]


def test_a_found_for_a_waiting_device_lands_after_its_stolen_step_with_force(
        clean_emulator: Any, blob_store: AzuriteHandle, tmp_path: Path) -> None:
    emu = clean_emulator
    services = storm_services(emu, blob_store, tmp_path, FORCE_SOURCES="storm-test")
    devices = seed_devices(emu, BUDGET + 3)
    for device_id in devices:
        service.handle_event_body(stolen(device_id), services)
    last = devices[-1]
    found = json.dumps({"eventId": f"fd-{last}", "type": "found", "registrationId": last, "force": True,
                        "occurredAt": fleet.OCCURRED_AT, "source": "storm-test"})
    outcome = service.handle_event_body(found, services)
    assert outcome.status == EventStatus.COMPLETED, outcome.error
    stolen_record = services.journal.get(f"st-{last}")
    assert stolen_record is not None
    assert stolen_record.status == EventStatus.COMPLETED  # settled before the found was planned
    drain_work_queue(services)
    statuses = fleet.hub_statuses(emu, 0)
    assert statuses[last] == "enabled"  # the found came last, and stays
    assert fleet.enrollment_status(emu, last) == "enabled"
    assert statuses[devices[-2]] == "disabled"
