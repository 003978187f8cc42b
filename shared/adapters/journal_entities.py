"""Table rows of the journal ↔ the journal's records (``EventRecord``, ``StepRecord``, ``RejectionRecord``).

Pure conversions, no I/O: ``journal_tables`` decides keys, queries and concurrency; this module decides how
one record is laid out in one entity. Property names are the stored format: renaming one orphans the rows
already written.

Long text (a plan, a rejected body) is split over ``<Name>0 … <Name>N-1`` string properties with a count in
``<Name>Chunks``, at most ``CHUNK`` UTF-16 code units each (the service allows 64 KiB = 32K UTF-16 code units
per string property, so an emoji counts twice). Optional fields that are None are left out of the
row rather than stored as nulls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.adapters.journal_format import split_units
from shared.lifecycle import BatchState, EmissionState
from shared.ports import BatchRecord, EmissionRecord, EventRecord, RejectionRecord, StepRecord, Tally

CHUNK = 30_000  # UTF-16 code units per string property


def put_text(entity: dict[str, Any], name: str, text: str) -> None:
    """Store ``text`` in ``entity`` as ``name`` chunks (at least one, possibly empty)."""
    chunks = split_units(text, CHUNK)
    entity[f"{name}Chunks"] = len(chunks)
    for i, chunk in enumerate(chunks):
        entity[f"{name}{i}"] = chunk


def get_text(entity: Mapping[str, Any], name: str) -> str:
    """The text ``put_text`` stored as ``name`` ("" when absent)."""
    return "".join(entity.get(f"{name}{i}", "") for i in range(int(entity.get(f"{name}Chunks", 0))))


def _opt(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    return None if value is None else str(value)


def header_entity(pk: str, row_key: str, record: EventRecord, history_key: str) -> dict[str, Any]:
    """The header row of a new event (its steps are rows of their own)."""
    entity: dict[str, Any] = {
        "PartitionKey": pk, "RowKey": row_key, "EventId": record.event_id,
        "EventType": record.event_type, "Target": record.target, "Source": record.source,
        "Status": record.status, "CorrelationId": record.correlation_id,
        "CreatedAt": record.created_at, "UpdatedAt": record.updated_at, "HistoryKey": history_key,
    }
    if record.error is not None:
        entity["Error"] = record.error
    if record.fingerprint is not None:
        entity["Fingerprint"] = record.fingerprint
    put_text(entity, "Plan", json.dumps(dict(record.plan or {}), sort_keys=True))
    return entity


def to_header(row: Mapping[str, Any]) -> EventRecord:
    """An event's header row as a record without steps."""
    plan_text = get_text(row, "Plan")
    return EventRecord(
        event_id=str(row["EventId"]), event_type=str(row["EventType"]), target=str(row["Target"]),
        source=str(row["Source"]), status=str(row["Status"]), correlation_id=str(row["CorrelationId"]),
        plan=json.loads(plan_text) if plan_text else None, error=_opt(row, "Error"),
        created_at=_opt(row, "CreatedAt"), updated_at=_opt(row, "UpdatedAt"),
        fingerprint=_opt(row, "Fingerprint"),
    )


def step_entity(pk: str, row_key: str, step: StepRecord) -> dict[str, Any]:
    """One attempt of a step as a row."""
    row: dict[str, Any] = {
        "PartitionKey": pk, "RowKey": row_key, "Index": step.index, "Kind": step.kind, "Target": step.target,
        "Outcome": step.outcome, "At": step.at,
    }
    optional = {"Hub": step.hub, "Before": step.before, "After": step.after, "Error": step.error}
    row.update({name: value for name, value in optional.items() if value is not None})
    return row


def to_step(row: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        index=int(row["Index"]), kind=str(row["Kind"]), target=str(row["Target"]),
        outcome=str(row["Outcome"]), hub=_opt(row, "Hub"), before=_opt(row, "Before"),
        after=_opt(row, "After"), error=_opt(row, "Error"), at=_opt(row, "At"),
    )


def rejection_entity(record: RejectionRecord) -> dict[str, Any]:
    """A rejection's row: partitioned by the first two hex digits of its id, keyed by the id."""
    row: dict[str, Any] = {
        "PartitionKey": record.rejection_id[:2], "RowKey": record.rejection_id, "At": record.at,
        "Errors": json.dumps(list(record.errors)), "Truncated": record.truncated,
    }
    if record.event_id is not None:
        row["EventId"] = record.event_id
    put_text(row, "Body", record.body)
    return row


def to_rejection(row: Mapping[str, Any]) -> RejectionRecord:
    return RejectionRecord(
        rejection_id=str(row["RowKey"]), body=get_text(row, "Body"),
        errors=tuple(json.loads(str(row["Errors"]))), event_id=_opt(row, "EventId"), at=str(row["At"]),
        truncated=bool(row.get("Truncated", False)),
    )


def emission_entity(pk: str, row_key: str, emission: EmissionRecord) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": row_key, "StepIndex": emission.step_index, "Run": emission.run,
            "State": str(emission.state), "Batches": emission.batches, "At": emission.at}


def to_emission(row: Mapping[str, Any]) -> EmissionRecord:
    return EmissionRecord(step_index=int(row["StepIndex"]), run=int(row["Run"]),
                          state=EmissionState(str(row["State"])), batches=int(row.get("Batches", 0)),
                          at=_opt(row, "At"))


def batch_entity(pk: str, row_key: str, batch: BatchRecord) -> dict[str, Any]:
    """A batch row; the device IDs are one JSON list (≤100 IDs of ≤128 characters: one property)."""
    row: dict[str, Any] = {
        "PartitionKey": pk, "RowKey": row_key, "StepIndex": batch.step_index, "Run": batch.run,
        "Number": batch.number, "Hub": batch.hub, "Action": batch.action, "State": str(batch.state),
        "Changed": batch.tally.changed, "Unchanged": batch.tally.unchanged, "Failed": batch.tally.failed,
        "At": batch.at,
    }
    put_text(row, "DeviceIds", json.dumps(list(batch.device_ids)))
    if batch.error is not None:
        row["Error"] = batch.error
    return row


def to_batch(row: Mapping[str, Any]) -> BatchRecord:
    return BatchRecord(
        step_index=int(row["StepIndex"]), run=int(row["Run"]), number=int(row["Number"]), hub=str(row["Hub"]),
        action=str(row["Action"]), device_ids=tuple(json.loads(get_text(row, "DeviceIds") or "[]")),
        state=BatchState(str(row["State"])),
        tally=Tally(int(row["Changed"]), int(row["Unchanged"]), int(row["Failed"])),
        error=_opt(row, "Error"), at=_opt(row, "At"),
    )
