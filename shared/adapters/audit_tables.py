"""Audit report history and suppressions on Azure Table storage (the journal's account; Azurite locally).

Tables (``<prefix>`` as for the journal):

* ``<prefix>auditreports`` — PartitionKey ``report``; RowKey = inverted start time + report ID, so a plain
  partition scan is newest first. The JSON document is split over string properties of 30,000 characters.
  An entity holds at most 1 MiB, so a document above ``DOC_LIMIT`` characters is stored with fewer findings
  (``storedFindingsTruncated: true``); the counts and summary are always complete.
* ``<prefix>auditsuppressions`` — PartitionKey = check ID, RowKey = encoded lower-cased resource; ``put``
  replaces (upsert), so re-suppressing extends or shortens the expiry.
* ``<prefix>auditlease`` — one entity (PartitionKey ``lease``, RowKey ``audit``): the audit that runs or
  waits, so one runs at a time. Taken by insert (409: someone else was first) or by an ETag-conditional
  replace (412: someone else changed it since the read), then re-read: a compare-and-swap across instances.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient, UpdateMode

from shared.adapters import storage_connection
from shared.adapters.journal_format import encode_key, newest_first_key
from shared.adapters.settings import Connection
from shared.adapters.storage_errors import guarded, stream_pages, with_retry
from shared.errors import Conflict, NotFound, PreconditionFailed
from shared.ports import AuditLeaseRecord, SuppressionRecord

CHUNK = 30_000
DOC_LIMIT = 14 * CHUNK  # ~840 KB of UTF-16, below the 1 MiB entity limit with room for the other properties
REPORT_PARTITION = "report"
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 20}


def _service(connection: str | Connection, credential: Any = None) -> TableServiceClient:
    """Either form of storage connection (``storage_connection``): a connection string or identity-based."""
    return storage_connection.table_service(connection, credential=credential, **_CLIENT_OPTIONS)


def _ensure(service: TableServiceClient, name: str) -> None:
    with contextlib.suppress(ResourceExistsError):
        with_retry(lambda: service.create_table_if_not_exists(name), f"create table {name}")


def _fit(report: Mapping[str, Any]) -> str:
    """The document as JSON, halving the listed findings until it fits in one entity."""
    doc = dict(report)
    text = json.dumps(doc, separators=(",", ":"))
    while len(text) > DOC_LIMIT and (doc.get("findings") or doc.get("suppressed")):
        for key in ("findings", "suppressed"):
            doc[key] = list(doc.get(key) or [])[: len(doc.get(key) or []) // 2]
        doc["storedFindingsTruncated"] = True
        text = json.dumps(doc, separators=(",", ":"))
    return text


def _started(report: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(report["startedAt"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return datetime.now(UTC)


class _AuditTable:
    """One audit table, ``<prefix><TABLE>``: the client, and creation on ``from_connection_string``."""

    TABLE: ClassVar[str]

    def __init__(self, service: TableServiceClient, *, prefix: str = "") -> None:
        self._service = service
        self._name = f"{prefix}{self.TABLE}"
        self._table = service.get_table_client(self._name)

    @classmethod
    def from_connection_string(cls, connection_string: str | Connection, *, prefix: str = "",
                               credential: Any = None) -> Self:
        store = cls(_service(connection_string, credential), prefix=prefix)
        _ensure(store._service, store._name)
        return store


class TableAuditReportStore(_AuditTable):
    """``AuditReportStore`` on one table."""

    TABLE = "auditreports"

    def __init__(self, service: TableServiceClient, *, prefix: str = "", page_size: int = 20) -> None:
        super().__init__(service, prefix=prefix)
        self._page_size = page_size

    def save(self, report: Mapping[str, Any]) -> None:
        report_id = str(report["reportId"])
        text = _fit(report)
        row: dict[str, Any] = {
            "PartitionKey": REPORT_PARTITION, "RowKey": newest_first_key(_started(report), report_id),
            "ReportId": report_id, "StartedAt": str(report.get("startedAt", "")),
            "Summary": json.dumps(report.get("summary", {}))[:CHUNK],
        }
        chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
        row["DocChunks"] = len(chunks)
        row.update({f"Doc{i}": c for i, c in enumerate(chunks)})
        with_retry(lambda: self._table.upsert_entity(row, mode=UpdateMode.REPLACE), "save audit report")

    def get(self, report_id: str) -> Mapping[str, Any] | None:
        rows = self._table.query_entities(
            "PartitionKey eq @pk and ReportId eq @rid", parameters={"pk": REPORT_PARTITION, "rid": report_id},
            results_per_page=self._page_size,
        )
        for row in stream_pages(rows.by_page(), "get audit report"):
            return _document(row)
        return None

    def iter_reports(self, limit: int | None = None) -> Iterator[Mapping[str, Any]]:
        rows = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": REPORT_PARTITION},
            results_per_page=min(self._page_size, limit or self._page_size),
        )
        for n, row in enumerate(stream_pages(rows.by_page(), "list audit reports")):
            if limit is not None and n >= limit:
                return
            yield _document(row)


def _document(row: Mapping[str, Any]) -> Mapping[str, Any]:
    text = "".join(row.get(f"Doc{i}", "") for i in range(int(row.get("DocChunks", 0))))
    doc: Mapping[str, Any] = json.loads(text)
    return doc


class TableSuppressionStore(_AuditTable):
    """``SuppressionStore`` on one table."""

    TABLE = "auditsuppressions"

    @staticmethod
    def _keys(check: str, resource: str) -> tuple[str, str]:
        return encode_key(check), encode_key(resource.lower())

    def put(self, suppression: SuppressionRecord) -> None:
        pk, rk = self._keys(suppression.check, suppression.resource)
        row = {
            "PartitionKey": pk, "RowKey": rk, "Check": suppression.check, "Resource": suppression.resource,
            "Until": suppression.until, "Reason": suppression.reason,
            "CreatedAt": suppression.created_at or "",
        }
        with_retry(lambda: self._table.upsert_entity(row, mode=UpdateMode.REPLACE), "save suppression")

    def delete(self, check: str, resource: str) -> bool:
        pk, rk = self._keys(check, resource)
        try:
            with_retry(lambda: self._table.get_entity(pk, rk), "read suppression")
        except NotFound:
            return False
        with_retry(lambda: self._table.delete_entity(pk, rk), "delete suppression")
        return True

    def iter_all(self) -> Iterator[SuppressionRecord]:
        pages = self._table.list_entities(results_per_page=100).by_page()
        for row in stream_pages(pages, "list suppressions"):
            yield SuppressionRecord(row["Check"], row["Resource"], row["Until"], row["Reason"],
                                    row.get("CreatedAt") or None)


LEASE_KEYS = ("lease", "audit")
LEASE_ATTEMPTS = 5


class TableAuditLease(_AuditTable):
    """``AuditLease`` on one entity of ``<prefix>auditlease``."""

    TABLE = "auditlease"

    def _read(self) -> Mapping[str, Any] | None:
        try:
            row: Mapping[str, Any] = with_retry(lambda: self._table.get_entity(*LEASE_KEYS),
                                                "read audit lease")
        except NotFound:
            return None
        return row

    def current(self) -> AuditLeaseRecord | None:
        row = self._read()
        return _lease_of(row) if row else None

    def claim(self, record: AuditLeaseRecord, now: str) -> AuditLeaseRecord:
        for _ in range(LEASE_ATTEMPTS):
            row = self._read()
            held = _lease_of(row) if row else None
            if held is not None and held.audit_id != record.audit_id and _after(held.expires_at, now):
                return held
            try:
                self._write(record, row)
            except (Conflict, PreconditionFailed):
                continue  # another instance wrote between our read and write: decide again
            return record
        raise PreconditionFailed("audit lease: too many concurrent writers")

    def _write(self, record: AuditLeaseRecord, row: Mapping[str, Any] | None) -> None:
        entity = {"PartitionKey": LEASE_KEYS[0], "RowKey": LEASE_KEYS[1], "AuditId": record.audit_id,
                  "State": record.state, "Remediate": record.remediate, "Since": record.since,
                  "ExpiresAt": record.expires_at}
        if row is None:
            guarded(lambda: self._table.create_entity(entity), "take audit lease")
            return
        etag = row.metadata["etag"] if hasattr(row, "metadata") else None
        guarded(lambda: self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                  match_condition=MatchConditions.IfNotModified),
                "take audit lease")

    def release(self, audit_id: str) -> None:
        row = self._read()
        if row is None or row.get("AuditId") != audit_id:
            return
        etag = row.metadata["etag"] if hasattr(row, "metadata") else None
        try:
            guarded(lambda: self._table.delete_entity(*LEASE_KEYS, etag=etag,
                                                      match_condition=MatchConditions.IfNotModified),
                    "release audit lease")
        except (NotFound, PreconditionFailed):
            return  # gone or taken over since the read: not ours to delete any more


def _lease_of(row: Mapping[str, Any]) -> AuditLeaseRecord:
    return AuditLeaseRecord(str(row["AuditId"]), str(row["State"]), bool(row.get("Remediate")),
                            str(row.get("Since", "")), str(row.get("ExpiresAt", "")))


def _after(stamp: str, now: str) -> bool:
    """Whether RFC 3339 ``stamp`` lies after ``now`` (an unreadable stamp counts as expired)."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")) > datetime.fromisoformat(
            now.replace("Z", "+00:00"))
    except ValueError:
        return False
