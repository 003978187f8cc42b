"""``shared.ports.PendingHubSteps`` on Azure Table storage (``azure-data-tables`` 12.7.0; Azurite locally).

Same semantics as ``InMemoryPendingHubSteps`` (pending_memory.py), checked by one shared contract test.
Table ``<prefix>pending``: PartitionKey = ``encode_key(hub.lower())``, RowKey = the device ID's UTF-8 bytes
in hex (device IDs are case-sensitive and may hold characters a RowKey forbids); properties Hub,
DeviceId, EventId, StepIndex, Action, Reason (absent when None) and Claim ('' while waiting, so
``has_waiting`` is one filtered query of one row). A hub's standing flush request is the row
RowKey ``~flush`` (device rows are hex, so never that), property RequestedAt: inserted by
``request_flush`` (one inserter wins), replaced ETag-conditionally once stale, deleted by
``clear_flush_request``.

``claim`` and ``remove`` are ETag-conditional (``IfNotModified``). To keep round trips low they go as
entity-group transactions of up to 100 entries of one partition. A transaction is all or nothing: when one
entry changed meanwhile (412/404) the service names it (``TableTransactionError`` message ``<index>:…``),
so that entry is dropped and the rest resubmitted (k stale entries: k + 1 round trips); a refusal naming
no entry makes the chunk go one entry at a time (single-entry transactions: ``delete_entity`` swallows a
404). A committed transaction answers each operation with its new ETag (``submit_transaction``'s
per-operation metadata, in operation order).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.adapters import storage_connection
from shared.adapters.journal_format import Clock, encode_key, utc_now
from shared.adapters.settings import Connection
from shared.adapters.storage_errors import stream_pages, with_retry
from shared.errors import Conflict, NotFound, PreconditionFailed
from shared.ports import PendingHubStep

FLUSH_REQUEST = "~flush"
TRANSACTION_LIMIT = 100  # entities per entity-group transaction (Table service limit)
PAGE_SIZE = 1000
# SDK retries off: storage_errors.with_retry is the one explicit retry loop; short timeouts.
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 20}
_INDEX = re.compile(r"^(\d+):")
_Op = tuple[str, dict[str, Any], dict[str, Any]]


def _pk(hub: str) -> str:
    return encode_key(hub.lower())


def _rk(device_id: str) -> str:
    return device_id.encode().hex()


def _entity(step: PendingHubStep) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": _pk(step.hub), "RowKey": _rk(step.device_id), "Hub": step.hub,
        "DeviceId": step.device_id, "EventId": step.event_id, "StepIndex": step.step_index,
        "Action": step.action, "Claim": step.claim or ""}
    if step.reason is not None:
        row["Reason"] = step.reason
    return row


def _step(row: Any) -> PendingHubStep:
    reason = row.get("Reason")
    return PendingHubStep(
        hub=str(row["Hub"]), device_id=str(row["DeviceId"]), event_id=str(row["EventId"]),
        step_index=int(row["StepIndex"]), action=str(row["Action"]),
        reason=None if reason is None else str(reason), claim=str(row["Claim"]) or None,
        etag=row.metadata["etag"])


def _chunks(steps: Sequence[PendingHubStep]) -> Iterator[list[PendingHubStep]]:
    """Steps by partition, at most ``TRANSACTION_LIMIT`` each; a repeated (hub, device) only once."""
    by_partition: dict[str, dict[str, PendingHubStep]] = {}
    for step in steps:
        if step.etag is None:
            continue  # never read from the store: nothing to be conditional on
        by_partition.setdefault(_pk(step.hub), {}).setdefault(_rk(step.device_id), step)
    for rows in by_partition.values():
        listed = list(rows.values())
        for start in range(0, len(listed), TRANSACTION_LIMIT):
            yield listed[start:start + TRANSACTION_LIMIT]


def _failed_index(exc: BaseException) -> int | None:
    """The operation a refused transaction names (its message starts ``<index>:``); None if it names none
    (``TableTransactionError.index`` itself defaults to 0 then, which would blame the wrong entry)."""
    cause = exc.__cause__
    if not isinstance(cause, TableTransactionError):
        return None
    found = _INDEX.match(getattr(cause, "message", "") or "")
    return int(found.group(1)) if found else None


def _keys(step: PendingHubStep) -> dict[str, Any]:
    return {"PartitionKey": _pk(step.hub), "RowKey": _rk(step.device_id)}


def _condition(step: PendingHubStep) -> dict[str, Any]:
    return {"etag": step.etag, "match_condition": MatchConditions.IfNotModified}


class TablePendingHubSteps:
    """``PendingHubSteps`` over one table; safe to share between threads and instances."""

    def __init__(self, service: TableServiceClient, *, prefix: str = "", page_size: int = PAGE_SIZE,
                 clock: Clock = utc_now) -> None:
        self._service = service
        self._table: TableClient = service.get_table_client(f"{prefix}pending")
        self._page_size = page_size
        self._clock = clock

    @classmethod
    def from_connection_string(cls, connection_string: str, *, prefix: str = "",
                               create_table: bool = True, clock: Clock = utc_now) -> TablePendingHubSteps:
        service = TableServiceClient.from_connection_string(connection_string, **_CLIENT_OPTIONS)
        return cls(service, prefix=prefix, clock=clock)._ready(create_table)

    @classmethod
    def from_connection(cls, connection: Connection, *, credential: Any = None, prefix: str = "",
                        create_table: bool = True) -> TablePendingHubSteps:
        """From a resolved ``Settings.journal`` (connection string or identity-based access)."""
        service = storage_connection.table_service(connection, credential=credential, **_CLIENT_OPTIONS)
        return cls(service, prefix=prefix)._ready(create_table)

    def _ready(self, create_table: bool) -> TablePendingHubSteps:
        if create_table:
            create = functools.partial(self._service.create_table_if_not_exists, self._table.table_name)
            with_retry(create, "create pending table")
        return self

    def drop_table(self) -> None:
        """For tests: remove this store's table."""
        drop = functools.partial(self._service.delete_table, self._table.table_name)
        with_retry(drop, "delete pending table")

    def add(self, step: PendingHubStep) -> PendingHubStep:
        row = _entity(replace(step, claim=None))
        try:
            meta = with_retry(functools.partial(self._table.create_entity, row), "pending add")
        except Conflict:
            existing = self.get(step.hub, step.device_id)
            if existing is None:  # removed in between: try again
                return self.add(step)
            return existing
        return replace(step, claim=None, etag=meta["etag"])

    def get(self, hub: str, device_id: str) -> PendingHubStep | None:
        try:
            read = functools.partial(self._table.get_entity, _pk(hub), _rk(device_id))
            row = with_retry(read, "pending get")
        except NotFound:
            return None
        return _step(row)

    def has_waiting(self, hub: str) -> bool:
        rows = self._table.query_entities("PartitionKey eq @pk and Claim eq ''", parameters={"pk": _pk(hub)},
                                          results_per_page=1, select=["RowKey"])
        return with_retry(lambda: next(iter(rows), None), "pending has waiting") is not None

    def entries(self, hub: str) -> Iterator[PendingHubStep]:
        rows = self._table.query_entities("PartitionKey eq @pk and RowKey ne @request",
                                          parameters={"pk": _pk(hub), "request": FLUSH_REQUEST},
                                          results_per_page=self._page_size)
        for row in stream_pages(rows.by_page(), "pending entries"):
            yield _step(row)

    def claim(self, steps: Sequence[PendingHubStep], claim: str) -> list[PendingHubStep]:
        if not claim:
            raise ValueError("a claim needs a name")
        claimed: list[PendingHubStep] = []
        for chunk in _chunks(steps):
            ops: list[_Op] = [
                ("update", {**_keys(s), "Claim": claim}, {"mode": UpdateMode.MERGE, **_condition(s)})
                for s in chunk]
            done = self._transact(ops, chunk, "pending claim")
            claimed.extend(replace(s, claim=claim, etag=etag) for s, etag in done)
        return claimed

    def remove(self, steps: Sequence[PendingHubStep]) -> int:
        return sum(len(self._transact([("delete", _keys(s), _condition(s)) for s in chunk], chunk,
                                      "pending remove")) for chunk in _chunks(steps))

    def request_flush(self, hub: str, stale_after: float) -> bool:
        now = self._clock()
        row = {"PartitionKey": _pk(hub), "RowKey": FLUSH_REQUEST, "RequestedAt": now}
        try:
            with_retry(functools.partial(self._table.create_entity, row), "pending request flush")
        except Conflict:
            pass
        else:
            return True
        try:
            standing = with_retry(functools.partial(self._table.get_entity, _pk(hub), FLUSH_REQUEST),
                                  "pending read flush request")
        except NotFound:
            return self.request_flush(hub, stale_after)  # cleared in between: ask afresh
        if now - standing["RequestedAt"] < timedelta(seconds=stale_after):
            return False
        replace_row = functools.partial(self._table.update_entity, row, mode=UpdateMode.REPLACE,
                                        etag=standing.metadata["etag"],
                                        match_condition=MatchConditions.IfNotModified)
        try:
            with_retry(replace_row, "pending renew flush request")
        except (PreconditionFailed, NotFound):
            return False  # another caller renewed or cleared it: that one sends
        return True

    def clear_flush_request(self, hub: str) -> None:
        clear = functools.partial(self._table.delete_entity, _pk(hub), FLUSH_REQUEST)
        with_retry(clear, "pending clear flush request")  # absent already: fine (the SDK ignores 404)

    def _transact(self, ops: list[_Op], chunk: list[PendingHubStep],
                  what: str) -> list[tuple[PendingHubStep, str | None]]:
        """Run ``ops`` (one per step of ``chunk``) as one transaction; the steps whose operation took effect,
        each with the entity's new ETag (None after a delete). A refused transaction names the operation
        that failed: that step is dropped and the rest tried again; if it names none, one by one."""
        left = list(zip(chunk, ops, strict=True))
        while left:
            try:
                results = self._submit([op for _, op in left], what)
            except (PreconditionFailed, NotFound) as exc:  # that entry changed or went since it was read
                index = _failed_index(exc)
                if index is None or index >= len(left):
                    return self._one_by_one(left, what)
                del left[index]
                continue
            return [(step, result.get("etag")) for (step, _), result in zip(left, results, strict=True)]
        return []

    def _one_by_one(self, left: list[tuple[PendingHubStep, _Op]],
                    what: str) -> list[tuple[PendingHubStep, str | None]]:
        done: list[tuple[PendingHubStep, str | None]] = []
        for step, op in left:
            try:
                (result,) = self._submit([op], what)
            except (PreconditionFailed, NotFound):
                continue  # changed or removed since it was read
            done.append((step, result.get("etag")))
        return done

    def _submit(self, ops: list[_Op], what: str) -> list[Mapping[str, Any]]:
        """One transaction; a refused operation surfaces as its own status (412, 404) translated. (Also the
        one-entry fallback: unlike ``delete_entity``, which swallows 404, a transaction reports it.)"""
        return with_retry(functools.partial(self._table.submit_transaction, ops), what)
