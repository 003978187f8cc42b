"""The durable journal on Azure Table storage (``azure-data-tables`` 12.7.0; Azurite locally).

Same semantics as ``InMemoryJournal`` (journal_memory.py), checked by one shared contract test.
Tables (``<prefix>`` lets tests and environments share an account):

* ``<prefix>journal`` — PartitionKey = encoded eventId (``encode_key``: eventIds are case-sensitive
  opaque strings; ``/ \\ # ? % ' ~`` and control characters are escaped as ``~XX``).
  RowKey ``event`` = the header (type, target, source, status, correlation id, plan JSON, error, times);
  RowKey ``step-<index:06>-<attempt:04>`` = one attempt of a step. Rows are only ever added, except the
  header's status/error/updatedAt (ETag-conditional merge). Reading one event is one single-partition
  query: the header sorts before its steps, and the latest attempt per index wins.
* ``<prefix>journaltargets`` — PartitionKey = encoded lower-cased target, RowKey = inverted begin time +
  encoded eventId, so a plain partition scan is newest first (``history``).
* ``<prefix>journalrejections`` — PartitionKey = first two hex digits of the rejection id, RowKey = the
  id; body (chunked), field errors (JSON), eventId if one could be read.

* ``<prefix>journalleases`` — PartitionKey = encoded lower-cased target, RowKey ``lease``: who holds the
  target and until when (``claim_target``: insert, or ETag-conditional replace of an expired lease).

Scale-out group work keeps, in the event's partition, ``emission-<step:06>-<run:04>`` rows (claimed by an
insert, so exactly one writer emits a run) and ``batch-<step:06>-<run:04>-<number:06>`` rows (each batch's
device set and state; state changes are ETag-conditional and follow ``shared.lifecycle.BATCH_TRANSITIONS``).
Rows written before these existed (scale-out bookkeeping in step rows) still read: they are step rows.

How one record becomes one row (property names, chunked long text) is ``journal_entities``.

Race safety: ``begin`` inserts (``create_entity``) and treats "already exists" as "known"; a step attempt
is an insert whose RowKey is the next free attempt number (a collision moves on to the next one).
Listings stream page by page.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import TableServiceClient, UpdateMode

from shared.adapters import storage_connection
from shared.adapters.journal_entities import (
    batch_entity,
    emission_entity,
    header_entity,
    rejection_entity,
    step_entity,
    to_batch,
    to_emission,
    to_header,
    to_rejection,
    to_step,
)
from shared.adapters.journal_format import (
    Clock,
    canonical_plan,
    clamp,
    encode_key,
    expires_at,
    new_rejection,
    newest_first_key,
    rfc3339,
    stamp_step,
    target_key,
    utc_now,
    validate_event_id,
)
from shared.adapters.settings import Connection
from shared.adapters.storage_errors import stream_pages, with_retry
from shared.errors import Conflict, NotFound, PreconditionFailed
from shared.lifecycle import EmissionState, EventStatus, batch_may_become, check_transition, effective_attempt
from shared.ports import BatchRecord, EmissionRecord, EventRecord, RejectionRecord, StepRecord

HEADER = "event"
PAGE_SIZE = 100
_CAS_ATTEMPTS = 8
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
# SDK retries off: storage_errors.with_retry is the one explicit retry loop; short timeouts.
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 20}


def _step_key(index: int, attempt: int) -> str:
    return f"step-{index:06d}-{attempt:04d}"


def _emission_key(step_index: int, run: int) -> str:
    return f"emission-{step_index:06d}-{run:04d}"


def _batch_key(step_index: int, run: int, number: int) -> str:
    return f"batch-{step_index:06d}-{run:04d}-{number:06d}"


LEASE = "lease"


class TableJournal:
    """``Journal`` over three tables of one storage account."""

    def __init__(
        self, service: TableServiceClient, *, prefix: str = "", clock: Clock = utc_now,
        page_size: int = PAGE_SIZE,
    ) -> None:
        kinds = ("journal", "journaltargets", "journalrejections", "journalleases")
        names = {kind: f"{prefix}{kind}" for kind in kinds}
        for name in names.values():
            if not _TABLE_NAME.match(name):
                raise ValueError(f"invalid table name {name!r}: 3-63 letters/digits, starting with a letter")
        self._service = service
        self._clock = clock
        self._page_size = page_size
        self._events = service.get_table_client(names["journal"])
        self._targets = service.get_table_client(names["journaltargets"])
        self._rejections = service.get_table_client(names["journalrejections"])
        self._leases = service.get_table_client(names["journalleases"])

    @classmethod
    def from_connection_string(
        cls, connection_string: str, *, prefix: str = "", clock: Clock = utc_now,
        create_tables: bool = True, page_size: int = PAGE_SIZE,
    ) -> TableJournal:
        service = TableServiceClient.from_connection_string(connection_string, **_CLIENT_OPTIONS)
        return cls(service, prefix=prefix, clock=clock, page_size=page_size)._ready(create_tables)

    @classmethod
    def from_account_url(
        cls, table_service_uri: str, credential: Any, *, prefix: str = "", clock: Clock = utc_now,
        create_tables: bool = True, page_size: int = PAGE_SIZE,
    ) -> TableJournal:
        """Identity-based access (``X__tableServiceUri`` + an azure-identity credential)."""
        service = TableServiceClient(endpoint=table_service_uri, credential=credential, **_CLIENT_OPTIONS)
        return cls(service, prefix=prefix, clock=clock, page_size=page_size)._ready(create_tables)

    @classmethod
    def from_connection(cls, connection: Connection, *, credential: Any = None, prefix: str = "",
                        clock: Clock = utc_now, create_tables: bool = True,
                        page_size: int = PAGE_SIZE) -> TableJournal:
        """From a resolved ``Settings.journal``: a connection string, or identity-based access
        (``storage_connection.table_service``; ``credential`` overrides the connection's own, for tests)."""
        service = storage_connection.table_service(connection, credential=credential, **_CLIENT_OPTIONS)
        return cls(service, prefix=prefix, clock=clock, page_size=page_size)._ready(create_tables)

    def _ready(self, create_tables: bool) -> TableJournal:
        if create_tables:
            self.ensure_tables()
        return self

    def ensure_tables(self) -> None:
        for table in (self._events, self._targets, self._rejections, self._leases):
            create = functools.partial(self._service.create_table_if_not_exists, table.table_name)
            with_retry(create, "create table")

    def drop_tables(self) -> None:
        """For tests: remove this journal's tables."""
        for table in (self._events, self._targets, self._rejections, self._leases):
            with_retry(functools.partial(self._service.delete_table, table.table_name), "delete table")

    # -- events ----------------------------------------------------------------------------------------

    def begin(
        self, event_id: str, *, event_type: str, target: str, source: str, correlation_id: str,
        plan: Mapping[str, Any], fingerprint: str | None = None,
    ) -> EventRecord:
        validate_event_id(event_id)
        created = self._clock()
        history_key = newest_first_key(created, event_id)
        new = EventRecord(
            event_id=event_id, event_type=event_type, target=target, source=source,
            status=EventStatus.RECEIVED, correlation_id=correlation_id, plan=canonical_plan(plan),
            created_at=rfc3339(created), updated_at=rfc3339(created), fingerprint=fingerprint,
        )
        header = header_entity(encode_key(event_id), HEADER, new, history_key)
        inserted = True
        try:
            with_retry(lambda: self._events.create_entity(header), "journal begin")
        except Conflict:
            inserted = False  # known already (a redelivery, or a concurrent delivery won the insert)
        record = self.get(event_id)
        if record is None:
            raise NotFound(f"journal: event {event_id!r} vanished after begin")
        self._index_target(record, history_key if inserted else None)
        return record

    def _index_target(self, record: EventRecord, history_key: str | None) -> None:
        """Idempotent upsert, repeated on redelivery, so a crash between header and index heals itself."""
        if history_key is None:
            stored = self._read_header(encode_key(record.event_id), record.event_id)
            history_key = str(stored["HistoryKey"])
        row = {"PartitionKey": target_key(record.target), "RowKey": history_key, "EventId": record.event_id}
        with_retry(lambda: self._targets.upsert_entity(row, mode=UpdateMode.REPLACE), "journal index target")

    def get(self, event_id: str) -> EventRecord | None:
        validate_event_id(event_id)
        # "event" < "step-…": the header and the step rows, not the batch and emission rows
        rows = self._events.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo", parameters={"pk": encode_key(event_id), "lo": HEADER},
            results_per_page=1000,
        )
        header: EventRecord | None = None
        attempts: dict[int, list[StepRecord]] = {}
        for row in stream_pages(rows.by_page(), "journal get"):
            if row["RowKey"] == HEADER:
                header = to_header(row)
            else:
                step = to_step(row)  # rows come in RowKey order: attempts in the order they were made
                attempts.setdefault(step.index, []).append(step)
        if header is None:
            return None
        steps = tuple(effective_attempt(attempts[i]) for i in sorted(attempts))
        return EventRecord(**{**header.__dict__, "steps": steps})

    def record_step(self, event_id: str, step: StepRecord) -> None:
        validate_event_id(event_id)
        pk = encode_key(event_id)
        header = self._read_header(pk, event_id)
        stamped = stamp_step(step, rfc3339(self._clock()))
        attempt = self._count_attempts(pk, step.index) + 1
        for _ in range(_CAS_ATTEMPTS):
            row = step_entity(pk, _step_key(step.index, attempt), stamped)
            try:
                self._insert(row, "journal record step")
                break
            except Conflict:
                attempt += 1  # a concurrent writer took this attempt number
        else:
            raise PreconditionFailed(f"journal: could not append step {step.index} of {event_id!r}")
        if header["Status"] == EventStatus.RECEIVED:
            self._update_header(pk, event_id, _start, stamped.at or "")

    def finish(self, event_id: str, status: str, error: str | None = None) -> None:
        validate_event_id(event_id)

        def change(header: Mapping[str, Any]) -> dict[str, Any]:
            return {"Status": str(check_transition(str(header["Status"]), status)), "Error": clamp(error)}

        self._update_header(encode_key(event_id), event_id, change, rfc3339(self._clock()))

    # -- target leases -----------------------------------------------------------------------------------

    def claim_target(self, target: str, holder: str, ttl_seconds: float) -> bool:
        now = self._clock()
        row = {"PartitionKey": target_key(target), "RowKey": LEASE, "Holder": holder,
               "ExpiresAt": expires_at(now, ttl_seconds)}
        try:
            with_retry(lambda: self._leases.create_entity(row), "journal claim target")
        except Conflict:
            return self._take_over(row, holder, now)
        return True

    def _take_over(self, row: dict[str, Any], holder: str, now: Any) -> bool:
        """The lease exists: extend it when it is ours, take it when it expired, else leave it."""
        try:
            current = with_retry(lambda: self._leases.get_entity(row["PartitionKey"], LEASE), "journal lease")
        except NotFound:
            return False  # released in between: the caller tries again
        if current["Holder"] != holder and str(current["ExpiresAt"]) > rfc3339(now):
            return False
        try:
            self._replace(self._leases, row, current.metadata["etag"], "journal take lease")
        except PreconditionFailed:
            return False  # another claimant won the expired lease
        return True

    def release_target(self, target: str, holder: str) -> None:
        pk = target_key(target)
        try:
            current = with_retry(lambda: self._leases.get_entity(pk, LEASE), "journal lease")
        except NotFound:
            return
        if current["Holder"] != holder:
            return
        etag = current.metadata["etag"]
        try:
            with_retry(lambda: self._leases.delete_entity(
                pk, LEASE, etag=etag, match_condition=MatchConditions.IfNotModified), "journal release")
        except (PreconditionFailed, NotFound):
            return  # taken over after it expired: not ours to delete

    # -- scale-out emission and batches ----------------------------------------------------------------

    def start_emission(self, event_id: str, step_index: int, run: int) -> bool:
        validate_event_id(event_id)
        emission = EmissionRecord(step_index, run, EmissionState.EMITTING, at=rfc3339(self._clock()))
        row = emission_entity(encode_key(event_id), _emission_key(step_index, run), emission)
        try:
            self._insert(row, "journal start emission")
        except Conflict:
            return False
        return True

    def record_batch(self, event_id: str, batch: BatchRecord) -> None:
        validate_event_id(event_id)
        stamped = BatchRecord(**{**batch.__dict__, "at": rfc3339(self._clock())})
        key = _batch_key(batch.step_index, batch.run, batch.number)
        self._insert(batch_entity(encode_key(event_id), key, stamped), "journal record batch")

    def end_emission(self, event_id: str, step_index: int, run: int, batches: int) -> None:
        validate_event_id(event_id)
        emission = EmissionRecord(step_index, run, EmissionState.RECORDED, batches, at=rfc3339(self._clock()))
        row = emission_entity(encode_key(event_id), _emission_key(step_index, run), emission)
        with_retry(lambda: self._events.upsert_entity(row, mode=UpdateMode.REPLACE), "journal end emission")

    def latest_emission(self, event_id: str, step_index: int) -> EmissionRecord | None:
        validate_event_id(event_id)
        low = _emission_key(step_index, 0)
        rows = self._events.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": encode_key(event_id), "lo": low, "hi": f"emission-{step_index:06d}-~"},
            results_per_page=1000)
        runs = [to_emission(r) for r in stream_pages(rows.by_page(), "journal emissions")]
        return max(runs, key=lambda e: e.run) if runs else None

    def batches(self, event_id: str, step_index: int, run: int) -> tuple[BatchRecord, ...]:
        validate_event_id(event_id)
        prefix = f"batch-{step_index:06d}-{run:04d}-"
        rows = self._events.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": encode_key(event_id), "lo": prefix, "hi": f"{prefix}~"}, results_per_page=1000)
        return tuple(to_batch(r) for r in stream_pages(rows.by_page(), "journal batches"))

    def settle_batch(self, event_id: str, batch: BatchRecord) -> bool:
        validate_event_id(event_id)
        pk, key = encode_key(event_id), _batch_key(batch.step_index, batch.run, batch.number)
        try:
            current = with_retry(lambda: self._events.get_entity(pk, key), "journal read batch")
        except NotFound:
            return False
        stored = to_batch(current)
        if not batch_may_become(stored.state, batch.state):
            return False
        settled = BatchRecord(**{**batch.__dict__, "device_ids": stored.device_ids,
                                 "error": clamp(batch.error), "at": rfc3339(self._clock())})
        try:
            self._replace(self._events, batch_entity(pk, key, settled), current.metadata["etag"],
                          "journal settle batch")
        except PreconditionFailed:
            return False  # a concurrent delivery settled it first
        return True

    def history(self, target: str) -> Iterator[EventRecord]:
        rows = self._targets.query_entities(
            "PartitionKey eq @pk", parameters={"pk": target_key(target)}, results_per_page=self._page_size
        )
        for row in stream_pages(rows.by_page(), "journal history"):
            record = self.get(str(row["EventId"]))
            if record is not None:
                yield record

    def iter_events(self, status: str | None = None) -> Iterator[EventRecord]:
        query, parameters = "RowKey eq @rk", {"rk": HEADER}
        if status is not None:
            query, parameters = f"{query} and Status eq @status", {**parameters, "status": status}
        rows = self._events.query_entities(query, parameters=parameters, results_per_page=self._page_size)
        for row in stream_pages(rows.by_page(), "journal list events"):
            yield to_header(row)

    # -- rejections ------------------------------------------------------------------------------------

    def record_rejection(self, body: str, errors: Sequence[Mapping[str, str]], event_id: str | None) -> str:
        record = new_rejection(body, errors, event_id, rfc3339(self._clock()))
        row = rejection_entity(record)
        with_retry(lambda: self._rejections.create_entity(row), "journal record rejection")
        return record.rejection_id

    def get_rejection(self, rejection_id: str) -> RejectionRecord | None:
        if not re.fullmatch(r"[0-9a-f]{32}", rejection_id):
            return None
        rows = self._rejections.query_entities(
            "PartitionKey eq @pk and RowKey eq @rk", parameters={"pk": rejection_id[:2], "rk": rejection_id}
        )
        found = [to_rejection(r) for r in stream_pages(rows.by_page(), "journal get rejection")]
        return found[0] if found else None

    def iter_rejections(self, event_id: str | None = None) -> Iterator[RejectionRecord]:
        """All rejections (or those of one eventId), ordered by rejection id; streamed."""
        rows = (
            self._rejections.list_entities(results_per_page=self._page_size) if event_id is None
            else self._rejections.query_entities(
                "EventId eq @id", parameters={"id": event_id}, results_per_page=self._page_size
            )
        )
        for row in stream_pages(rows.by_page(), "journal list rejections"):
            yield to_rejection(row)

    # -- helpers ---------------------------------------------------------------------------------------

    def _insert(self, row: dict[str, Any], what: str) -> None:
        with_retry(lambda: self._events.create_entity(row), what)

    def _read_header(self, pk: str, event_id: str) -> Any:
        try:
            return with_retry(lambda: self._events.get_entity(pk, HEADER), "journal read")
        except NotFound:
            raise NotFound(f"journal: no event {event_id!r}") from None

    def _count_attempts(self, pk: str, index: int) -> int:
        rows = self._events.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": pk, "lo": _step_key(index, 0), "hi": f"step-{index:06d}-~"},
            select=["RowKey"], results_per_page=1000,
        )
        return sum(1 for _ in stream_pages(rows.by_page(), "journal count attempts"))

    @staticmethod
    def _replace(table: Any, entity: dict[str, Any], etag: str | None, what: str) -> None:
        """Replace ``entity`` only if it is unchanged since it was read with ``etag`` (412 otherwise)."""

        def replace() -> object:
            return table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )

        with_retry(replace, what)

    def _update_header(
        self, pk: str, event_id: str, change: Callable[[Any], dict[str, Any] | None], now: str
    ) -> None:
        """Read-modify-write of the whole header (REPLACE, so a cleared error really disappears) with
        its ETag; 412 = another writer won: re-read and decide again."""
        for _ in range(_CAS_ATTEMPTS):
            header = self._read_header(pk, event_id)
            fields = change(header)
            if fields is None:
                return
            entity = {**header, "UpdatedAt": now, **fields}
            entity = {name: value for name, value in entity.items() if value is not None}
            try:
                self._replace(self._events, entity, header.metadata["etag"], "journal update event")
            except PreconditionFailed:
                continue
            return
        raise PreconditionFailed(f"journal: event {event_id!r} kept changing under us")


def _start(header: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first step moves a ``received`` event to ``in_progress``; any other status is left alone."""
    if header["Status"] != EventStatus.RECEIVED:
        return None
    return {"Status": str(check_transition(str(header["Status"]), EventStatus.IN_PROGRESS))}


def table_service(connection: Connection, *, credential: Any = None) -> TableServiceClient:
    """A table service client for a connection of either form (``storage_connection.table_service``)."""
    return storage_connection.table_service(connection, credential=credential, **_CLIENT_OPTIONS)


identity_table_service = table_service  # the older name (identity-based only); both forms work now
