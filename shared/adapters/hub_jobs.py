"""Large-group purges through IoT Hub import jobs (docs/azure-behaviour.md §9), which the identity-registry
throttle does not limit: one job replaces thousands of throttled bulk calls.

* delete: stream ``{"id", "importMode": "delete"}`` lines into ``devices.txt`` (Put Block / Put Block List,
  so memory stays bounded), create an ``import`` job with the container's SAS URI, poll it to the end.
* disable: an import needs the *whole* device (an ``update`` overwrites authentication), so the hub's
  registry is first exported (with keys), the wanted devices still enabled are rewritten with
  ``status: disabled`` and ``importMode: updateIfMatchETag`` (a device changed since the export fails
  instead of being overwritten), and imported. Both blobs are deleted afterwards: the export holds keys.
  Bounded memory: the wanted IDs sit in a temporary SQLite file; the rewritten lines stream from the export
  straight into the import blob (they hold keys, so they never touch local disk).

Blob storage is reached over plain HTTP(S) with a container SAS (``shared.adapters.blob_container``).

Not pinned by a documented source: the layout of ``importErrors.log``. This adapter reads each line as JSON
and looks only at ``errorCode``: ``DeviceNotFound`` counts as unchanged (an absent identity cannot connect),
anything else as failed. Only one import/export job may be active per hub: a second one is answered 429
(``ThrottlingMaxActiveJobCountExceeded``), which surfaces as ``Throttled`` and so as a redelivery.

Jobs take minutes (docs/azure-behaviour.md §9: ~1M devices per hour on S3), so the poll backs off from
``poll_interval`` to ``max_poll_interval`` (5 s, the interval of Microsoft's bulk-identity sample): a long
job costs a dozen jobs-budget operations a minute, not 120 (S1 allows 100 a minute per unit). A job is given
up (``Transient``) after ``timeout`` seconds plus one second per ``SLOWEST_DEVICES_PER_SECOND`` devices it
carries, and the deadline moves on while the job's ``progress`` rises, so a large job that advances is never
abandoned, while one stuck in the queue is.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from azure.iot.hub import IoTHubJobManager
from azure.iot.hub.protocol.models import JobProperties

from shared.adapters.blob_container import BlobContainer
from shared.adapters.iothub import host_name_of
from shared.adapters.sdk_errors import guarded
from shared.errors import Permanent, Transient
from shared.retry import Retrier

ERRORS_BLOB = "importErrors.log"  # fixed name written by the service: one working container per hub
_DONE = ("completed", "failed", "cancelled")
MAX_POLL_SECONDS = 5.0
POLL_BACKOFF = 1.5
# Our allowance for the slowest job: a fifth of the ~278 devices/s published for S3 (docs/azure-behaviour.md
# §9); no rate is documented for S1/S2, so the deadline must not assume theirs is as high.
SLOWEST_DEVICES_PER_SECOND = 50.0
# A purge's container SAS must outlive its jobs, or IoT Hub fails them half-way (device-simulation-dotnet
# raised its job SAS to 48 h for that reason, PR 310): the export and the import of the largest hub
# (1,000,000 devices, docs/azure-behaviour.md §8.1) at SLOWEST_DEVICES_PER_SECOND take 11.1 h.
JOB_SAS_TTL = dt.timedelta(hours=12)


@dataclass(frozen=True)
class JobResult:
    """Device counts of one import job (``changed`` = lines applied)."""

    job_id: str
    changed: int = 0
    unchanged: int = 0
    failed: int = 0


class HubImportJobs:
    """Import/export jobs of one hub, with one working container (blob names are unique per run)."""

    def __init__(self, hub: str, manager: IoTHubJobManager, container: BlobContainer, *,
                 poll_interval: float = 0.5, max_poll_interval: float = MAX_POLL_SECONDS,
                 timeout: float = 900.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, retrier: Retrier | None = None) -> None:
        self.hub = hub
        self._jobs, self._container = manager, container
        self._poll, self._max_poll = poll_interval, max(poll_interval, max_poll_interval)
        self._timeout, self._sleep, self._clock = timeout, sleep, clock
        self._retrier = retrier or Retrier()

    @classmethod
    def from_connection_string(cls, connection_string: str, container: BlobContainer, *,
                               ca_bundle: str | None = None, **options: Any) -> HubImportJobs:
        manager = job_manager(connection_string, ca_bundle)
        return cls(host_name_of(connection_string), manager, container, **options)

    def delete(self, device_ids: Iterable[str]) -> JobResult:
        lines = (json.dumps({"id": d, "importMode": "delete"}) for d in device_ids)
        return self._import(lines, unchanged=lambda: 0)

    def disable(self, device_ids: Iterable[str], reason: str | None = None, *,
                reasons: Mapping[str, str] | None = None) -> JobResult:
        """Export, rewrite the wanted enabled devices as disabled, import with their eTags. ``reasons``
        gives devices a statusReason of their own (storm coalescing: each event's), else ``reason``. Memory
        stays bounded: the wanted IDs go to a temporary SQLite set on disk, and the rewritten lines
        stream from the export blob straight into the import blob's blocks (they hold keys: never spooled
        to disk)."""
        export = f"export-{uuid.uuid4().hex}.txt"
        with _IdSet(device_ids) as wanted:
            try:
                # the hub's size is unknown here; the wanted IDs are a lower bound of what the export carries
                self._run({"type": "export", "output_blob_container_uri": self._container.sas_uri,
                           "output_blob_name": export, "exclude_keys_in_export": False}, len(wanted))
                seen = {"found": 0, "already": 0}
                lines = self._rewritten(export, wanted, seen, reason, reasons or {})
                # absent identities cannot connect: unchanged (export lines are unique per device)
                return self._import(lines, unchanged=lambda: seen["already"] + len(wanted) - seen["found"])
            finally:
                self._container.delete(export)

    def _rewritten(self, export: str, wanted: _IdSet, seen: dict[str, int],
                   reason: str | None, reasons: Mapping[str, str]) -> Iterator[str]:
        for line in self._container.iter_lines(export):
            device = json.loads(line)
            if device.get("id") not in wanted:
                continue
            seen["found"] += 1
            if device.get("status") == "disabled":
                seen["already"] += 1
                continue
            yield json.dumps(_disabled(device, reasons.get(device["id"]) or reason))

    def _import(self, lines: Iterable[str], *, unchanged: Callable[[], int]) -> JobResult:
        """Upload ``lines``, run the import, count ``importErrors.log``; ``unchanged`` is read once the
        lines were consumed (a disable counts them while they stream)."""
        blob = f"import-{uuid.uuid4().hex}.txt"
        self._container.delete(ERRORS_BLOB)  # a log left by an earlier run must not count against this one
        try:
            count = self._container.put_lines(blob, lines)
            if count == 0:
                return JobResult("", 0, unchanged(), 0)
            job = self._run({"type": "import", "input_blob_container_uri": self._container.sas_uri,
                             "input_blob_name": blob, "output_blob_container_uri": self._container.sas_uri},
                            count)
            absent = failed = 0
            for line in self._container.iter_lines(ERRORS_BLOB):
                code = str(json.loads(line).get("errorCode", ""))
                absent, failed = (absent + 1, failed) if "DeviceNotFound" in code else (absent, failed + 1)
            return JobResult(job, count - absent - failed, unchanged() + absent, failed)
        finally:
            self._container.delete(blob)
            self._container.delete(ERRORS_BLOB)

    def _run(self, spec: dict[str, Any], devices: int) -> str:
        """Create a job and poll it to the end (see the module doc for the back-off and the deadline);
        returns its id. A failed job is ``Permanent``."""
        properties = JobProperties(storage_authentication_type="keyBased", **spec)
        created = self._call("create import/export job",
                             lambda: self._jobs.create_import_export_job(properties))
        job_id, interval = str(created.job_id), self._poll
        deadline = self._clock() + self._timeout + devices / SLOWEST_DEVICES_PER_SECOND
        status, reason, progress = created.status, created.failure_reason, created.progress
        while status not in _DONE:
            if self._clock() > deadline:
                raise Transient(f"{spec['type']} job {job_id} on {self.hub} still {status} after "
                                f"{self._timeout}s without progress")
            self._sleep(interval)
            interval = min(interval * POLL_BACKOFF, self._max_poll)
            job = self._call("get import/export job", lambda: self._jobs.get_import_export_job(job_id))
            if (job.progress or 0) > (progress or 0):
                deadline = max(deadline, self._clock() + self._timeout)
            status, reason, progress = job.status, job.failure_reason, job.progress
        if status != "completed":
            raise Permanent(f"{spec['type']} job {job_id} on {self.hub} ended {status}: {str(reason)[:200]}")
        return job_id

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        return self._retrier.call(lambda: guarded(fn, f"{what} ({self.hub})"), name=what)


class _IdSet:
    """A set of device IDs in a private temporary SQLite database (``connect("")``: on disk, deleted when
    closed), so a disable of a hub's whole share of a large group holds O(1) IDs in memory (SQLite's page
    cache, 2 MiB by default). Case-sensitive, as IoT Hub device IDs are. Used by one thread only."""

    def __init__(self, ids: Iterable[str]) -> None:
        self._db = sqlite3.connect("")
        try:
            self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
            self._db.executemany("INSERT OR IGNORE INTO ids (id) VALUES (?)", ((i,) for i in ids))
            self._db.commit()
            self._size = int(self._db.execute("SELECT count(*) FROM ids").fetchone()[0])
        except BaseException:
            self._db.close()
            raise

    def __contains__(self, device_id: object) -> bool:
        if not isinstance(device_id, str):
            return False
        return self._db.execute("SELECT 1 FROM ids WHERE id = ?", (device_id,)).fetchone() is not None

    def __len__(self) -> int:
        return self._size

    def __enter__(self) -> _IdSet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._db.close()


def _disabled(device: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """The exported device as an ``updateIfMatchETag`` line with ``status: disabled`` (auth kept)."""
    keep = ("id", "eTag", "authentication", "capabilities", "deviceScope", "parentScopes")
    line = {k: device[k] for k in keep if k in device}
    line.update(importMode="updateIfMatchETag", status="disabled")
    if reason:
        line["statusReason"] = reason[:128]
    return line


def job_manager(connection_string: str, ca_bundle: str | None = None) -> IoTHubJobManager:
    """An ``IoTHubJobManager`` for one hub; ``ca_bundle`` trusts a local CA for this client only."""
    manager = IoTHubJobManager.from_connection_string(connection_string.strip().rstrip(";"))
    if ca_bundle:
        manager.protocol.config.connection.verify = ca_bundle
    return manager
