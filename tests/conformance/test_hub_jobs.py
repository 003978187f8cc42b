"""Import/export jobs through ``IoTHubJobManager`` (azure-iot-hub 2.7.0) with real Azurite blob storage.

The test prepares containers and blobs with plain HTTP and an account SAS computed here (no blob SDK in the
venv); the emulator reads and writes them through the container SAS URIs, as IoT Hub does.

Jobs take time in the emulator (start latency, then devices per second, compressed by F). Tests about what a
job does set a start latency of 0 and a high rate (``instant_jobs``); the timing tests set their own.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest
import requests
from azure.iot.hub import IoTHubJobManager
from azure.iot.hub.protocol.models import JobProperties
from msrest.exceptions import HttpOperationError

from devhost.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, AzuriteHandle

pytestmark = pytest.mark.slow



def account_sas() -> str:
    """Account SAS (blob service, container+object, rwdlac) — the 2020-12-06+ string-to-sign."""
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"sv": "2021-08-06", "ss": "b", "srt": "sco", "sp": "rwdlac", "se": expiry, "spr": "https,http"}
    to_sign = "\n".join([DEV_ACCOUNT, fields["sp"], fields["ss"], fields["srt"], "", fields["se"], "",
                         fields["spr"], fields["sv"], ""]) + "\n"
    digest = hmac.new(base64.b64decode(DEV_ACCOUNT_KEY), to_sign.encode(), hashlib.sha256).digest()
    fields["sig"] = base64.b64encode(digest).decode()
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())


@pytest.fixture
def container(blob_store: AzuriteHandle) -> str:
    """A fresh container; returns its SAS URI."""
    name = "c" + uuid.uuid4().hex[:12]
    uri = f"{blob_store.blob_url}/{name}?{account_sas()}"
    response = requests.put(f"{blob_store.blob_url}/{name}?restype=container&{account_sas()}", timeout=10)
    assert response.status_code == 201, response.text
    return uri


def blob(container_uri: str, name: str) -> str:
    base, _, query = container_uri.partition("?")
    return f"{base}/{name}?{query}"


@pytest.fixture
def instant_jobs(clean_emulator: Any) -> Any:
    clean_emulator.admin("PUT", "/jobs", {"jobStartSeconds": 0, "jobDevicesPerSecond": 1e6})
    return clean_emulator


def wait_done(jobs: Any, job_id: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        job = jobs.get_import_export_job(job_id)
        if job.status in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_import_job_creates_disables_deletes_and_logs_errors(instant_jobs: Any, container: str) -> None:
    clean_emulator = instant_jobs
    rm = clean_emulator.registry_manager(0)
    rm.create_device_with_sas("old", None, None, "enabled")
    rm.create_device_with_sas("to-disable", None, None, "enabled")
    lines = [{"id": f"imp-{i}", "importMode": "create", "status": "enabled"} for i in range(150)]
    lines += [{"id": "to-disable", "importMode": "update", "status": "disabled"},
              {"id": "old", "importMode": "delete"}, {"id": "ghost", "importMode": "delete"}]
    upload = requests.put(blob(container, "devices.txt"), data="\n".join(json.dumps(x) for x in lines),
                          headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert upload.status_code == 201
    jobs = IoTHubJobManager.from_connection_string(clean_emulator.hub_connection_string(0))
    created = jobs.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri=container, output_blob_container_uri=container))
    assert created.status in ("enqueued", "running", "completed")
    job = wait_done(jobs, created.job_id)
    assert job.status == "completed", job.failure_reason
    stats = rm.get_device_registry_statistics()
    assert (stats.total_device_count, stats.disabled_device_count) == (151, 1)
    log = requests.get(blob(container, "importErrors.log"), timeout=10).text
    assert [json.loads(x)["errorCode"] for x in log.splitlines()] == ["DeviceNotFound"]


def test_export_job_writes_devices_without_keys(instant_jobs: Any, container: str) -> None:
    clean_emulator = instant_jobs
    rm = clean_emulator.registry_manager(0)
    rm.create_device_with_sas("exp-1", None, None, "disabled")
    jobs = IoTHubJobManager.from_connection_string(clean_emulator.hub_connection_string(0))
    created = jobs.create_import_export_job(JobProperties(
        type="export", output_blob_container_uri=container, exclude_keys_in_export=True))
    assert wait_done(jobs, created.job_id).status == "completed"
    text = requests.get(blob(container, "devices.txt"), timeout=10).text
    exported = [json.loads(x) for x in text.splitlines()]
    assert [(d["id"], d["status"]) for d in exported] == [("exp-1", "disabled")]
    assert exported[0]["authentication"]["symmetricKey"]["primaryKey"] is None
    assert [j.job_id for j in jobs.get_import_export_jobs()] == [created.job_id]


def test_import_from_unreachable_storage_fails_the_job(instant_jobs: Any) -> None:
    clean_emulator = instant_jobs
    jobs = IoTHubJobManager.from_connection_string(clean_emulator.hub_connection_string(0))
    created = jobs.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri="http://127.0.0.1:1/devstoreaccount1/none?sv=x",
        output_blob_container_uri="http://127.0.0.1:1/devstoreaccount1/none?sv=x"))
    job = wait_done(jobs, created.job_id)
    assert job.status == "failed"
    assert job.failure_reason


def upload_lines(container: str, lines: list[dict[str, Any]]) -> None:
    response = requests.put(blob(container, "devices.txt"), data="\n".join(json.dumps(x) for x in lines),
                            headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert response.status_code == 201


def test_a_job_is_enqueued_then_running_with_progress_then_completed_at_its_modelled_end(
        clean_emulator: Any, container: str) -> None:
    """2 s start latency + 1,000 devices at 100/s = 12 s real; at F = 10 the job ends 1.2 s after creation."""
    settings = clean_emulator.admin("PUT", "/jobs", {"jobStartSeconds": 2, "jobDevicesPerSecond": 100,
                                                     "timeCompression": 10})
    assert (settings["jobStartSeconds"], settings["jobDevicesPerSecond"]) == (2.0, 100.0)
    upload_lines(container, [{"id": f"t-{i}", "importMode": "create"} for i in range(1000)])
    rm = clean_emulator.registry_manager(0)
    jobs = IoTHubJobManager.from_connection_string(clean_emulator.hub_connection_string(0))
    created = jobs.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri=container, output_blob_container_uri=container))
    started = time.monotonic()
    assert (created.status, created.progress) == ("enqueued", 0)
    seen: list[tuple[float, str, int, int]] = []  # (elapsed, status, progress, devices in the hub)
    asked: list[float] = []  # elapsed when each poll was sent: "enqueued" is only answered to one sent early
    while not seen or (seen[-1][1] not in ("completed", "failed") and seen[-1][0] < 10):
        asked.append(time.monotonic() - started)
        job = jobs.get_import_export_job(created.job_id)
        seen.append((time.monotonic() - started, job.status, job.progress,
                     rm.get_device_registry_statistics().total_device_count))
        time.sleep(0.03)
    assert seen[-1][1:] == ("completed", 100, 1000)
    # sent time, not answered time: on a loaded machine an answer given at 0.19 s may arrive after 0.2 s
    assert all(a < 0.2 for a, (_, status, _, _) in zip(asked, seen, strict=True) if status == "enqueued")
    running = [(progress, devices) for _, status, progress, devices in seen if status == "running"]
    assert any(0 < progress < 100 and 0 < devices < 1000 for progress, devices in running), running
    done_at = min(t for t, status, _, _ in seen if status == "completed")
    assert 1.2 <= done_at + 0.05 < 3.0  # not before the modelled end (poll spacing aside), not long after it
    [record] = clean_emulator.admin("GET", "/counters")["jobs"]["hub-1"]
    assert (record["type"], record["devices"], record["modelledRealSeconds"]) == ("import", 1000, 12.0)


def test_one_active_job_per_hub_even_while_it_waits_to_start(clean_emulator: Any) -> None:
    clean_emulator.admin("PUT", "/jobs", {"jobStartSeconds": 3600})
    jobs = IoTHubJobManager.from_connection_string(clean_emulator.hub_connection_string(0))
    storage = "http://127.0.0.1:1/devstoreaccount1/none?sv=x"  # never reached: the job never starts
    first = jobs.create_import_export_job(JobProperties(type="export", output_blob_container_uri=storage))
    with pytest.raises(HttpOperationError) as refused:
        jobs.create_import_export_job(JobProperties(type="export", output_blob_container_uri=storage))
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["iothub-errorcode"] == "ThrottlingMaxActiveJobCountExceeded"
    other_hub = IoTHubJobManager.from_connection_string(clean_emulator.hub_connection_string(1))
    assert other_hub.create_import_export_job(
        JobProperties(type="export", output_blob_container_uri=storage)).status == "enqueued"
    assert jobs.cancel_import_export_job(first.job_id)["status"] == "cancelled"  # the SDK returns a dict
    assert jobs.create_import_export_job(
        JobProperties(type="export", output_blob_container_uri=storage)).status == "enqueued"
