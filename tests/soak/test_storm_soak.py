"""Soak: a storm of single-device ``stolen`` events through the real queue trigger, with the emulator
injecting faults and the local host SIGKILLed and restarted twice while hub steps wait and flush; and a
forced ``found`` for ten devices whose ``stolen`` hub step is waiting.

The app's budget is small (30 registry ops/min per hub) and its job threshold low, so most hub steps wait
in their hub's pending set and are applied by import jobs. Nothing lost: every event ends ``completed``,
every stolen device is refused by DPS and disabled in its hub, the sets end empty. Nothing applied twice:
per event at most one journal attempt of a step says ``done``/``already_done``. Order: each found device
ends enabled in DPS and in its hub: its waiting ``stolen`` step landed before the ``found``, never after.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.azurite import AzuriteHandle
from emulator.testing import EmulatorHandle
from shared.adapters.pending_tables import TablePendingHubSteps
from tests.soak.checks import fleet_state, host_loop_problems, journal_rows
from tests.soak.conftest import AppConfig, app_values, host_for
from tests.soak.hostproc import HostProcess
from tests.soak.settle import queue, send_all, wait_settled
from tests.soak.soakfleet import Expected, event_body, seed_fleet

FAULTS = {"rate5xx": 0.03, "rate429": 0.03, "rateDrop": 0.01, "retryAfter": 1}
DEVICES = 160
FOUND = 10
FOUND_SOURCE = "storm-soak-recovery"
JOB = "POST /jobs/create"

pytestmark = pytest.mark.soak



@pytest.fixture
def storm_config(clean_emulator: EmulatorHandle, blob_store: AzuriteHandle) -> AppConfig:
    suffix = uuid.uuid4().hex[:10]
    prefix, lifecycle, work = f"storm{suffix}", f"storm-events-{suffix}", f"storm-work-{suffix}"
    values = app_values(clean_emulator, blob_store, prefix, lifecycle, work,
                        IOTHUB_REGISTRY_OPS_PER_MINUTE="30", STORM_JOB_THRESHOLD="20",
                        FORCE_SOURCES=FOUND_SOURCE)
    return AppConfig(prefix, lifecycle, work, values, blob_store.connection_string)


@pytest.fixture
def storm_host(storm_config: AppConfig, tmp_path: Path) -> Iterator[HostProcess]:
    yield from host_for(storm_config, tmp_path)


def test_a_storm_under_faults_and_kills_ends_with_every_event_applied_once_and_no_step_left(
        clean_emulator: EmulatorHandle, storm_config: AppConfig, storm_host: HostProcess) -> None:
    emu = clean_emulator
    emu.admin("PUT", "/jobs", {"jobStartSeconds": 2, "jobDevicesPerSecond": 50})  # jobs take seconds
    run = "storm-" + uuid.uuid4().hex[:8]
    rng = random.Random(run)
    devices = seed_fleet(emu, DEVICES, run)
    expected = [Expected(f"{run}-e{i:04d}", "temporary", event_body(f"{run}-e{i:04d}", "stolen",
                                                                     d.registration_id),
                         "completed", d, "disabled", "disabled") for i, d in enumerate(devices)]
    emu.admin("PUT", "/faults", json=FAULTS)
    storm_host.start()
    send_all(queue(storm_config.storage, storm_config.lifecycle_queue), expected)
    started = time.monotonic()
    founds = _found_for_waiting(storm_config, expected, run)
    send_all(queue(storm_config.storage, storm_config.lifecycle_queue), founds)
    for moment in sorted(rng.uniform(time.monotonic() - started + 1.0, 25.0) for _ in range(2)):
        time.sleep(max(0.0, moment - (time.monotonic() - started)))  # while steps wait and flush
        storm_host.kill()
        storm_host.start()
    expected = [*expected, *founds]

    def unsettled() -> list[str]:
        headers = journal_rows(storm_config.storage, storm_config.prefix).headers
        return [e.event_id for e in expected if headers.get(e.event_id, {}).get("Status") != "completed"]

    state = wait_settled(lambda: _Progress(unsettled()), timeout=300)
    emu.admin("PUT", "/faults", json={})
    storm_host.stop()
    assert state.unsettled == [], f"not completed: {state.unsettled[:20]}"
    fleet = fleet_state(emu)
    found_ids = {e.device.registration_id for e in expected if e.kind == "found" and e.device}
    wrong = [d.registration_id for d in devices
             if (fleet.enrollment(d.registration_id), fleet.identity(d.registration_id))
             != (("enabled",) * 2 if d.registration_id in found_ids else ("disabled",) * 2)]
    assert wrong == [], "a found device must end enabled, every other stolen device revoked"
    rows = journal_rows(storm_config.storage, storm_config.prefix)
    assert rows.done_twice() == []
    waited = {event_id for (event_id, _index), attempts in rows.attempts.items() if "skipped" in attempts}
    assert len(waited) > DEVICES // 3, "many hub steps waited in a set (the budget is 30/min)"
    jobs = sum(sum(ops.get(JOB, {}).values()) for ops in emu.admin("GET", "/counters")["calls"].values())
    assert jobs >= 2, "the sets went by import jobs"
    pending = TablePendingHubSteps.from_connection_string(storm_config.storage, prefix=storm_config.prefix)
    for hub in emu.hubs:
        assert list(pending.entries(hub["hostName"])) == []
    assert host_loop_problems(storm_host.output()) == []
    with contextlib.suppress(Exception):
        pending.drop_table()


def _found_for_waiting(config: AppConfig, storm: list[Expected], run: str) -> list[Expected]:
    """Forced ``found`` events for the first ``FOUND`` devices seen waiting in a set (stolen in progress,
    its hub step journaled ``skipped``)."""
    by_id = {e.event_id: e for e in storm}
    deadline = time.monotonic() + 60
    waiting: list[Expected] = []
    while len(waiting) < FOUND and time.monotonic() < deadline:
        rows = journal_rows(config.storage, config.prefix)
        waiting = [by_id[event_id] for (event_id, _index), attempts in sorted(rows.attempts.items())
                   if event_id in by_id and "skipped" in attempts
                   and rows.headers[event_id].get("Status") == "in_progress"][:FOUND]
        time.sleep(0.5)
    assert len(waiting) == FOUND, "steps must be waiting in a set for the found events to race them"
    return [Expected(f"{run}-f{i:02d}", "found", event_body(f"{run}-f{i:02d}", "found",
                                                            e.device.registration_id, force=True,
                                                            source=FOUND_SOURCE),
                     "completed", e.device, "enabled", "enabled")
            for i, e in enumerate(waiting) if e.device is not None]


class _Progress:
    def __init__(self, unsettled: list[str]) -> None:
        self.unsettled = unsettled
