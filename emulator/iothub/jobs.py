"""Import/export jobs (``IoTHubJobManager``): bulk identity changes through blob storage
(docs/azure-behaviour.md §9).

The blob side is plain HTTP against Azurite (or any Blob-compatible endpoint) using the container SAS URIs
the caller passes (``storageAuthenticationType: keyBased``). Only loopback storage hosts are contacted — the
emulator never reaches out beyond 127.0.0.1.

* import: reads ``inputBlobName`` (default ``devices.txt``; one ExportImportDevice JSON per line),
  applies each line with the bulk-registry rules plus ``createOrUpdate`` (default) /
  ``createOrUpdateIfMatchETag``, and writes failures to ``importErrors.log`` in the output container.
* export: writes ``outputBlobName`` (default ``devices.txt``), one device per line; ``excludeKeysInExport``
  drops the symmetric keys.

Jobs take time (``emulator.iothub.jobtiming``: start latency, then devices per second, both compressed by
F): ``enqueued`` for the start latency, then ``running`` with ``progress`` (the wire's percentage field)
rising as devices are handled, then ``completed``/``failed`` at the modelled end. An import applies its
lines in blob order as it goes, so its changes become visible progressively, as the registry of a real
hub changes while its job runs; an export reads the registry when it starts running and writes its blob
at the end (a reader must wait for ``completed`` anyway). A cancelled job stops where it is: lines already
applied stay applied. One import/export job may be active per hub (a second → 429
``ThrottlingMaxActiveJobCountExceeded``). Not modelled: job history expiry (30 days), identity-based
storage access, configurations export.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from emulator.http import ServiceError
from emulator.iothub.bulk import EntryError, apply_entry
from emulator.iothub.jobtiming import JobTiming
from emulator.iothub.model import hub_error, now_iso, validate_device_id
from emulator.iothub.state import HubState

ACTIVE = ("enqueued", "running")
# How often a running job applies its next devices and updates ``progress`` (wall seconds): fine enough for a
# compressed job of a second, cheap for an uncompressed one of an hour.
TICK_SECONDS = 0.1


def _blob_url(container_uri: str, blob: str) -> str:
    """``https://host/account/container?sas`` + blob name; refuses non-loopback hosts and odd schemes."""
    parts = urlsplit(container_uri)
    host = parts.hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if parts.scheme not in ("http", "https") or not loopback:
        raise ValueError("storage URI must be http(s) on a loopback host")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + blob, parts.query, ""))


def _get_blob(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - scheme and host checked
        return str(response.read().decode("utf-8"))


def _put_blob(url: str, text: str) -> None:
    request = urllib.request.Request(url, data=text.encode(), method="PUT",  # noqa: S310 - checked above
                                     headers={"x-ms-blob-type": "BlockBlob", "Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310
        pass


def _export_line(view: dict[str, Any], twin: dict[str, Any], exclude_keys: bool) -> str:
    auth = dict(view["authentication"])
    if exclude_keys:
        auth["symmetricKey"] = {"primaryKey": None, "secondaryKey": None}
    record = {"id": view["deviceId"], "eTag": view["etag"], "status": view["status"],
              "statusReason": view["statusReason"], "authentication": auth,
              "twinETag": twin["etag"], "tags": twin["tags"],
              "properties": {"desired": twin["properties"]["desired"]},
              "capabilities": view["capabilities"], "deviceScope": view["deviceScope"],
              "parentScopes": view["parentScopes"]}
    return json.dumps(record)


class JobClock(Protocol):
    """Where jobs get their timing and report their end (``emulator.knobs.Knobs``)."""

    def job_timing(self) -> JobTiming: ...

    def record_job(self, hub: str, summary: dict[str, Any]) -> None: ...


def _line_error(number: int, code: str, status: str) -> str:
    return json.dumps({"line": number, "errorCode": code, "errorStatus": status})


class _ImportWork:
    """An import's lines, read when the job starts running and applied in order as the job advances."""

    def __init__(self, state: HubState, job: dict[str, Any]) -> None:
        self.state, self.job = state, job
        text = _get_blob(_blob_url(job["inputBlobContainerUri"], job.get("inputBlobName") or "devices.txt"))
        self.lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        self.total = len(self.lines)
        self.errors: list[str] = []

    def advance(self, start: int, stop: int, halt: threading.Event) -> None:
        with self.state.lock:
            if halt.is_set():  # checked under the registry lock: a reset or cancel wins over this chunk
                return
            devices = self.state.raw()
            for number, line in self.lines[start:stop]:
                try:
                    entry = json.loads(line)
                    validate_device_id(entry.get("id") or "")
                    apply_entry(self.state, devices, entry)
                except EntryError as exc:
                    self.errors.append(_line_error(number, exc.code, exc.status))
                except ServiceError as exc:
                    self.errors.append(_line_error(number, str(exc.code), exc.message))
                except (ValueError, AttributeError) as exc:
                    self.errors.append(_line_error(number, "ArgumentInvalid", str(exc)[:200]))
            self.state.bump()

    def finish(self) -> None:
        if self.errors:
            url = _blob_url(self.job["outputBlobContainerUri"], "importErrors.log")
            _put_blob(url, "\n".join(self.errors) + "\n")


class _ExportWork:
    """An export: the registry as it stands when the job starts running, written out at the end."""

    def __init__(self, state: HubState, job: dict[str, Any]) -> None:
        self.job = job
        exclude = bool(job.get("excludeKeysInExport"))
        with state.lock:
            self.lines = [_export_line(i.device_view(), i.twin_view(), exclude) for i in state.raw().values()]
        self.total = len(self.lines)

    def advance(self, start: int, stop: int, halt: threading.Event) -> None:
        """Nothing to apply: the blob is written whole by ``finish``."""

    def finish(self) -> None:
        blob = self.job.get("outputBlobName") or "devices.txt"
        text = "\n".join(self.lines) + ("\n" if self.lines else "")
        _put_blob(_blob_url(self.job["outputBlobContainerUri"], blob), text)


class JobRunner:
    """The jobs of one hub; thread-safe. Each job runs on its own worker thread."""

    def __init__(self, state: HubState, clock: JobClock) -> None:
        self.state = state
        self._clock = clock
        self._jobs: dict[str, dict[str, Any]] = {}
        self._stops: dict[str, threading.Event] = {}  # set on cancel or reset: the worker stops waiting
        self._lock = threading.Lock()

    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("type") not in ("import", "export"):
            raise hub_error(400, "ArgumentInvalid", "type must be 'import' or 'export'.")
        wanted = "inputBlobContainerUri" if body["type"] == "import" else "outputBlobContainerUri"
        if not body.get(wanted) or (body["type"] == "import" and not body.get("outputBlobContainerUri")):
            raise hub_error(400, "ArgumentInvalid", f"{wanted} and outputBlobContainerUri are required.")
        timing = self._clock.job_timing()  # fixed now: a later knob change does not stretch this job
        with self._lock:
            if any(job["status"] in ACTIVE for job in self._jobs.values()):
                raise hub_error(429, "ThrottlingMaxActiveJobCountExceeded", "Another job is active.")
            job = {**body, "jobId": str(uuid.uuid4()), "status": "enqueued", "progress": 0,
                   "startTimeUtc": now_iso(), "endTimeUtc": None, "failureReason": None,
                   "storageAuthenticationType": body.get("storageAuthenticationType") or "keyBased"}
            self._jobs[job["jobId"]] = job
            stop = self._stops[job["jobId"]] = threading.Event()
            snapshot = dict(job)
        args = (job["jobId"], timing, stop)
        threading.Thread(target=self._run, args=args, name="hub-job", daemon=True).start()
        return snapshot

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            if job_id not in self._jobs:
                raise hub_error(404, "JobNotFound", f"Job {job_id} not found.")
            return dict(self._jobs[job_id])

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(job) for job in self._jobs.values()]

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise hub_error(404, "JobNotFound", f"Job {job_id} not found.")
            if job["status"] in ACTIVE:
                job["status"], job["endTimeUtc"] = "cancelled", now_iso()
                self._stops[job_id].set()
            return dict(job)

    def reset(self) -> None:
        with self._lock:
            for stop in self._stops.values():
                stop.set()
            self._jobs.clear()
            self._stops.clear()

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any] | None:
        """Apply ``changes`` unless the job was cancelled; None once a reset removed it."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job["status"] != "cancelled":
                job.update(changes)
            return dict(job)

    def _run(self, job_id: str, timing: JobTiming, stop: threading.Event) -> None:
        if stop.wait(timing.start_delay()):
            return  # cancelled or reset while enqueued
        job = self._update(job_id, status="running")
        if job is None or job["status"] != "running":
            return
        total = 0
        try:
            work = _ImportWork(self.state, job) if job["type"] == "import" else _ExportWork(self.state, job)
            total = work.total
            if not self._advance(job_id, work, timing, stop):
                return
            work.finish()
        except (OSError, ValueError, urllib.error.URLError) as exc:
            self._end(job_id, timing, total, status="failed", failureReason=str(exc)[:200])
            return
        self._end(job_id, timing, total, status="completed", progress=100)

    def _advance(self, job_id: str, work: _ImportWork | _ExportWork, timing: JobTiming,
                 stop: threading.Event) -> bool:
        """Handle the work at the modelled rate; False when the job was cancelled or reset meanwhile."""
        started, done = time.monotonic(), 0
        while True:
            due = timing.processed(work.total, time.monotonic() - started)
            if due > done:
                work.advance(done, due, stop)
                done = due
                # 100 is kept for ``completed``: the blob is still to be written
                if self._update(job_id, progress=min(99, 100 * done // work.total)) is None:
                    return False
            if done >= work.total:
                return True
            left = timing.run_seconds(work.total) - (time.monotonic() - started)
            if stop.wait(min(TICK_SECONDS, max(left, 0.0))):
                return False

    def _end(self, job_id: str, timing: JobTiming, devices: int, **changes: Any) -> None:
        job = self._update(job_id, endTimeUtc=now_iso(), **changes)
        if job is None or job["status"] == "cancelled":
            return
        self._clock.record_job(self.state.name, {
            "jobId": job_id, "type": job["type"], "status": job["status"], "devices": devices,
            "modelledRealSeconds": timing.real_seconds(devices)})
