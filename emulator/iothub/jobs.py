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

Jobs run on a worker thread right after creation: ``enqueued`` → ``running`` → ``completed``/``failed``.
One import/export job may be active per hub (a second → 429 ``ThrottlingMaxActiveJobCountExceeded``).
Not modelled: job history expiry (30 days), identity-based storage access, configurations export.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from emulator.http import ServiceError
from emulator.iothub.bulk import EntryError, apply_entry
from emulator.iothub.model import hub_error, now_iso, validate_device_id
from emulator.iothub.state import HubState

ACTIVE = ("enqueued", "running")


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


class JobRunner:
    """The jobs of one hub; thread-safe."""

    def __init__(self, state: HubState) -> None:
        self.state = state
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("type") not in ("import", "export"):
            raise hub_error(400, "ArgumentInvalid", "type must be 'import' or 'export'.")
        wanted = "inputBlobContainerUri" if body["type"] == "import" else "outputBlobContainerUri"
        if not body.get(wanted) or (body["type"] == "import" and not body.get("outputBlobContainerUri")):
            raise hub_error(400, "ArgumentInvalid", f"{wanted} and outputBlobContainerUri are required.")
        with self._lock:
            if any(job["status"] in ACTIVE for job in self._jobs.values()):
                raise hub_error(429, "ThrottlingMaxActiveJobCountExceeded", "Another job is active.")
            job = {**body, "jobId": str(uuid.uuid4()), "status": "enqueued", "progress": 0,
                   "startTimeUtc": now_iso(), "endTimeUtc": None, "failureReason": None,
                   "storageAuthenticationType": body.get("storageAuthenticationType") or "keyBased"}
            self._jobs[job["jobId"]] = job
            snapshot = dict(job)
        threading.Thread(target=self._run, args=(job["jobId"],), name="hub-job", daemon=True).start()
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
            return dict(job)

    def reset(self) -> None:
        with self._lock:
            self._jobs.clear()

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            job = self._jobs[job_id]
            if job["status"] == "cancelled":
                return dict(job)
            job.update(changes)
            return dict(job)

    def _run(self, job_id: str) -> None:
        job = self._update(job_id, status="running")
        if job["status"] == "cancelled":
            return
        try:
            if job["type"] == "import":
                self._import(job)
            else:
                self._export(job)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            self._update(job_id, status="failed", endTimeUtc=now_iso(), failureReason=str(exc)[:200])
            return
        self._update(job_id, status="completed", progress=100, endTimeUtc=now_iso())

    def _import(self, job: dict[str, Any]) -> None:
        text = _get_blob(_blob_url(job["inputBlobContainerUri"], job.get("inputBlobName") or "devices.txt"))
        errors: list[str] = []
        with self.state.lock:
            devices = self.state.raw()
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    validate_device_id(entry.get("id") or "")
                    apply_entry(self.state, devices, entry)
                except EntryError as exc:
                    errors.append(json.dumps({"line": number, "errorCode": exc.code,
                                              "errorStatus": exc.status}))
                except ServiceError as exc:
                    errors.append(json.dumps({"line": number, "errorCode": str(exc.code),
                                              "errorStatus": exc.message}))
                except (ValueError, AttributeError) as exc:
                    errors.append(json.dumps({"line": number, "errorCode": "ArgumentInvalid",
                                              "errorStatus": str(exc)[:200]}))
            self.state.bump()
        if errors:
            _put_blob(_blob_url(job["outputBlobContainerUri"], "importErrors.log"), "\n".join(errors) + "\n")

    def _export(self, job: dict[str, Any]) -> None:
        with self.state.lock:
            identities = list(self.state.raw().values())
            lines = [_export_line(i.device_view(), i.twin_view(), bool(job.get("excludeKeysInExport")))
                     for i in identities]
        blob = job.get("outputBlobName") or "devices.txt"
        _put_blob(_blob_url(job["outputBlobContainerUri"], blob), "\n".join(lines) + ("\n" if lines else ""))
