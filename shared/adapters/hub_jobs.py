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

Blob storage is reached over plain HTTP(S) with a container SAS (no blob SDK in this app). The SAS is a
service SAS for one container, signed here with the account key (string-to-sign of version 2020-12-06+).
The working container is created once with a short-lived *account* SAS (a container's own SAS cannot
create it): ``blob_account`` reads endpoint, name and key from a storage connection string and
``create_container`` creates the container if absent (wiring and the integration tests both use them).

Not pinned by a documented source: the layout of ``importErrors.log``. This adapter reads each line as JSON
and looks only at ``errorCode``: ``DeviceNotFound`` counts as unchanged (an absent identity cannot connect),
anything else as failed. Only one import/export job may be active per hub: a second one is answered 429
(``ThrottlingMaxActiveJobCountExceeded``), which surfaces as ``Throttled`` and so as a redelivery.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from azure.iot.hub import IoTHubJobManager
from azure.iot.hub.protocol.models import JobProperties

from shared.adapters.iothub import host_name_of
from shared.adapters.sdk_errors import guarded
from shared.errors import NotFound, Permanent, Transient
from shared.retry import Retrier

BLOCK_BYTES = 4 * 1024 * 1024
SAS_VERSION = "2021-08-06"
ERRORS_BLOB = "importErrors.log"  # fixed name written by the service: one working container per hub
_DONE = ("completed", "failed", "cancelled")


def container_sas(account: str, key_b64: str, container: str, *, expiry: dt.datetime,
                  permissions: str = "racwdl") -> str:
    """A service SAS (query string) for one container, valid until ``expiry`` (UTC)."""
    fields = {"sp": permissions, "st": "", "se": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "canonical": f"/blob/{account}/{container}", "si": "", "sip": "", "spr": "https,http",
              "sv": SAS_VERSION, "sr": "c", "snapshot": "", "ses": "", "rscc": "", "rscd": "", "rsce": "",
              "rscl": "", "rsct": ""}
    digest = hmac.new(base64.b64decode(key_b64), "\n".join(fields.values()).encode(), hashlib.sha256).digest()
    query = {k: fields[k] for k in ("sv", "sr", "sp", "se", "spr")}
    query["sig"] = base64.b64encode(digest).decode()
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())


@dataclass(frozen=True, repr=False)
class BlobAccount:
    """Blob endpoint, account name and key of a storage connection string (``repr`` hides the key)."""

    endpoint: str
    name: str
    key: str

    def __repr__(self) -> str:
        return f"BlobAccount(endpoint={self.endpoint!r}, name={self.name!r}, key=<hidden>)"


def blob_account(connection_string: str) -> BlobAccount | None:
    """``BlobEndpoint`` with ``AccountName``/``AccountKey``; without any explicit endpoint, the default one
    (``<protocol>://<account>.blob.<suffix>``). None without an account key (e.g. a SAS-only string) or when
    other services have explicit endpoints but blob has none (e.g. Azurite without its blob service)."""
    pairs = (part.partition("=") for part in connection_string.split(";"))
    parts = {k.strip().lower(): v.strip() for k, _, v in pairs}
    name, key = parts.get("accountname"), parts.get("accountkey")
    if not name or not key:
        return None
    endpoint = parts.get("blobendpoint")
    if endpoint is None and any(k.endswith("endpoint") for k in parts):
        return None
    endpoint = endpoint or (f"{parts.get('defaultendpointsprotocol') or 'https'}://{name}.blob."
                            f"{parts.get('endpointsuffix') or 'core.windows.net'}")
    return BlobAccount(endpoint.rstrip("/"), name, key)


def create_container(account: BlobAccount, name: str, *, timeout: float = 10.0) -> None:
    """Create ``name`` if absent, with a short-lived account SAS (a container's own SAS cannot create it)."""
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"sv": SAS_VERSION, "ss": "b", "srt": "c", "sp": "c", "se": expiry, "spr": "https,http"}
    to_sign = "\n".join([account.name, "c", "b", "c", "", expiry, "", fields["spr"], SAS_VERSION, "", ""])
    fields["sig"] = base64.b64encode(hmac.new(base64.b64decode(account.key), to_sign.encode(),
                                              hashlib.sha256).digest()).decode()
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())
    try:
        response = requests.put(f"{account.endpoint}/{name}?restype=container&{query}", timeout=timeout)
    except requests.RequestException as exc:
        raise Transient(f"create container: blob storage unreachable ({type(exc).__name__})") from exc
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise Transient(f"create container: blob storage answered {response.status_code}")
    if response.status_code not in (201, 409):  # 409: it exists already
        raise Permanent(f"create container: blob storage answered {response.status_code}")


class BlobContainer:
    """One container through its SAS URI (``https://host/account/container?sas``). Never logs the URI."""

    def __init__(self, sas_uri: str, *, timeout: float = 30.0) -> None:
        self.sas_uri = sas_uri
        self._base, _, self._sas = sas_uri.partition("?")
        self._timeout = timeout
        self._http = requests.Session()

    @classmethod
    def for_account(cls, blob_endpoint: str, account: str, key_b64: str, container: str, *,
                    ttl: dt.timedelta = dt.timedelta(hours=2)) -> BlobContainer:
        expiry = dt.datetime.now(dt.UTC) + ttl
        sas = container_sas(account, key_b64, container, expiry=expiry)
        return cls(f"{blob_endpoint.rstrip('/')}/{container}?{sas}")

    def _url(self, blob: str | None = None, **params: str) -> str:
        path = self._base if blob is None else f"{self._base}/{quote(blob)}"
        extra = "".join(f"&{k}={quote(v, safe='')}" for k, v in params.items())
        return f"{path}?{self._sas}{extra}"

    def _send(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            response = self._http.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise Transient(f"{what}: blob storage unreachable ({type(exc).__name__})") from exc
        if response.status_code == 404:
            raise NotFound(f"{what}: blob storage answered 404")
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise Transient(f"{what}: blob storage answered {response.status_code}")
        if response.status_code >= 400 and response.status_code != 409:
            raise Permanent(f"{what}: blob storage answered {response.status_code}")
        return response

    def put_lines(self, blob: str, lines: Iterable[str]) -> int:
        """Upload ``lines`` as a block blob in ≤4 MiB blocks (bounded memory); returns the line count."""
        blocks: list[str] = []
        buffer, size, count = [], 0, 0
        for line in lines:
            data = line.encode() + b"\n"
            buffer.append(data)
            size, count = size + len(data), count + 1
            if size >= BLOCK_BYTES:
                blocks.append(self._put_block(blob, len(blocks), b"".join(buffer)))
                buffer, size = [], 0
        if buffer or not blocks:
            blocks.append(self._put_block(blob, len(blocks), b"".join(buffer)))
        body = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
            f"<Latest>{b}</Latest>" for b in blocks) + "</BlockList>"
        self._send("PUT", self._url(blob, comp="blocklist"), "put block list", data=body.encode())
        return count

    def _put_block(self, blob: str, number: int, data: bytes) -> str:
        block_id = base64.b64encode(f"block-{number:08d}".encode()).decode()
        self._send("PUT", self._url(blob, comp="block", blockid=block_id), "put block", data=data)
        return block_id

    def iter_lines(self, blob: str) -> Iterator[str]:
        """The blob's non-empty lines, streamed; a missing blob has none."""
        try:
            response = self._send("GET", self._url(blob), "read blob", stream=True)
        except NotFound:
            return
        with response:
            for raw in response.iter_lines():
                if raw.strip():
                    yield raw.decode("utf-8")

    def delete(self, blob: str) -> None:
        try:
            self._send("DELETE", self._url(blob), "delete blob")
        except NotFound:
            return


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
                 poll_interval: float = 0.5, timeout: float = 900.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 retrier: Retrier | None = None) -> None:
        self.hub = hub
        self._jobs, self._container = manager, container
        self._poll, self._timeout, self._sleep, self._clock = poll_interval, timeout, sleep, clock
        self._retrier = retrier or Retrier()

    @classmethod
    def from_connection_string(cls, connection_string: str, container: BlobContainer, *,
                               ca_bundle: str | None = None, **options: Any) -> HubImportJobs:
        manager = job_manager(connection_string, ca_bundle)
        return cls(host_name_of(connection_string), manager, container, **options)

    def delete(self, device_ids: Iterable[str]) -> JobResult:
        lines = (json.dumps({"id": d, "importMode": "delete"}) for d in device_ids)
        return self._import(lines, unchanged=lambda: 0)

    def disable(self, device_ids: Iterable[str], reason: str | None = None) -> JobResult:
        """Export, rewrite the wanted enabled devices as disabled, import with their eTags. Memory stays
        bounded: the wanted IDs go to a temporary SQLite set on disk, and the rewritten lines stream from
        the export blob straight into the import blob's blocks (they hold keys: never spooled to disk)."""
        export = f"export-{uuid.uuid4().hex}.txt"
        with _IdSet(device_ids) as wanted:
            try:
                self._run({"type": "export", "output_blob_container_uri": self._container.sas_uri,
                           "output_blob_name": export, "exclude_keys_in_export": False})
                seen = {"found": 0, "already": 0}
                lines = self._rewritten(export, wanted, seen, reason)
                # absent identities cannot connect: unchanged (export lines are unique per device)
                return self._import(lines, unchanged=lambda: seen["already"] + len(wanted) - seen["found"])
            finally:
                self._container.delete(export)

    def _rewritten(self, export: str, wanted: _IdSet, seen: dict[str, int],
                   reason: str | None) -> Iterator[str]:
        for line in self._container.iter_lines(export):
            device = json.loads(line)
            if device.get("id") not in wanted:
                continue
            seen["found"] += 1
            if device.get("status") == "disabled":
                seen["already"] += 1
                continue
            yield json.dumps(_disabled(device, reason))

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
                             "input_blob_name": blob, "output_blob_container_uri": self._container.sas_uri})
            absent = failed = 0
            for line in self._container.iter_lines(ERRORS_BLOB):
                code = str(json.loads(line).get("errorCode", ""))
                absent, failed = (absent + 1, failed) if "DeviceNotFound" in code else (absent, failed + 1)
            return JobResult(job, count - absent - failed, unchanged() + absent, failed)
        finally:
            self._container.delete(blob)
            self._container.delete(ERRORS_BLOB)

    def _run(self, spec: dict[str, Any]) -> str:
        """Create a job and poll it to the end; returns its id. A failed job is ``Permanent``."""
        properties = JobProperties(storage_authentication_type="keyBased", **spec)
        created = self._call("create import/export job",
                             lambda: self._jobs.create_import_export_job(properties))
        job_id, deadline = str(created.job_id), self._clock() + self._timeout
        status, reason = created.status, created.failure_reason
        while status not in _DONE:
            if self._clock() > deadline:
                raise Transient(f"{spec['type']} job {job_id} on {self.hub} still {status} after "
                                f"{self._timeout}s")
            self._sleep(self._poll)
            job = self._call("get import/export job", lambda: self._jobs.get_import_export_job(job_id))
            status, reason = job.status, job.failure_reason
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
