"""The import-job path as the app wires it: ``wiring.build_services`` over the emulator and a blob Azurite.

``test_engine_large`` proves the path with hand-made runners; this file proves the *wiring*: the settings
(``GROUP_IMPORT_JOB_THRESHOLD``, the storage connection string with its ``BlobEndpoint`` and account key)
decide whether a group event applied in process (the work queue removed, as ``python -m unprovision apply``
does) purges a hub by one import job or by throttled bulk calls. The emulator's call counters tell the two
apart: a bulk call is ``POST /devices`` on a hub, a job is ``POST /jobs/create``. No fakes.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import AzuriteHandle
from shared.adapters.settings import GROUP_IMPORT_JOB_THRESHOLD, from_emulator
from tests.integration import engine_fleet as fleet
from tests.support.azurite_fixtures import unique_prefix
from unprovision import service, wiring

pytestmark = pytest.mark.slow

GROUP = "grp-wiring"
DEVICES = 12  # round robin over the emulator's 2 hubs: 6 + 6
BULK = "POST /devices"
JOB = "POST /jobs/create"



def in_process_services(emu: Any, blobs: AzuriteHandle, tmp_path: Path, threshold: int) -> wiring.Services:
    """``build_services`` from emulator settings; the journal's storage (no ``AzureWebJobsStorage``) is the
    blob-capable Azurite. Without the work queue group work runs in process, where import jobs apply."""
    config = tmp_path / "emulator.json"
    config.write_text(json.dumps(emu.config), encoding="utf-8")
    settings = from_emulator(config, blobs.connection_string,
                             base={GROUP_IMPORT_JOB_THRESHOLD: str(threshold)})
    services = wiring.build_services(settings, table_prefix=unique_prefix(), environ={})
    assert services.import_jobs is not None, "an account key and a blob endpoint enable import jobs"
    return services.in_process()


def retire_group(services: wiring.Services) -> Any:
    body = {"eventId": f"e-{uuid.uuid4().hex[:12]}", "type": "retired", "occurredAt": fleet.OCCURRED_AT,
            "source": "wiring-jobs", "enrollmentGroupId": GROUP, "deleteGroup": True}
    return service.handle_event_body(json.dumps(body), services)


def hub_calls(emu: Any, operation: str) -> int:
    """Answered ``operation`` calls summed over both hubs (registry operations count once per device)."""
    calls = emu.admin("GET", "counters")["calls"]
    return sum(sum(calls.get(hub["name"], {}).get(operation, {}).values()) for hub in emu.hubs)


def identities_left(emu: Any) -> int:
    return sum(len(fleet.hub_statuses(emu, i)) for i in range(len(emu.hubs)))


def test_threshold_of_one_purges_every_hub_by_an_import_job_without_bulk_registry_calls(
        clean_emulator: Any, blob_store: AzuriteHandle, tmp_path: Path) -> None:
    emu = clean_emulator
    per_hub = fleet.seed_large_group(emu, GROUP, DEVICES, seed=None)
    emu.admin("PUT", "/jobs", {"jobStartSeconds": 0, "jobDevicesPerSecond": 1e6})  # wiring, not job timing
    outcome = retire_group(in_process_services(emu, blob_store, tmp_path, threshold=1))
    assert outcome.status == "completed", outcome.error
    assert identities_left(emu) == 0
    assert hub_calls(emu, BULK) == 0, "no device may go through a bulk registry call"
    assert hub_calls(emu, JOB) == len(per_hub) == 2  # one import job per hub
    after = outcome.steps[-1].after or ""
    assert f"changed={DEVICES} unchanged=0 failed=0" in after
    assert after.endswith("bulk calls 0, import jobs 2")


def test_threshold_above_the_group_size_purges_through_bulk_calls_and_no_job(
        clean_emulator: Any, blob_store: AzuriteHandle, tmp_path: Path) -> None:
    emu = clean_emulator
    fleet.seed_large_group(emu, GROUP, DEVICES, seed=None)
    outcome = retire_group(in_process_services(emu, blob_store, tmp_path, threshold=DEVICES + 1))
    assert outcome.status == "completed", outcome.error
    assert identities_left(emu) == 0
    assert hub_calls(emu, BULK) == DEVICES  # every device once, through bulk calls
    assert hub_calls(emu, JOB) == 0
    after = outcome.steps[-1].after or ""
    assert f"changed={DEVICES} unchanged=0 failed=0" in after
    assert after.endswith("bulk calls 2, import jobs 0")  # one ≤100-device call per hub
