"""The journal in memory: the reference semantics of ``Journal``, for ``--dry-run`` and service tests.

``TableJournal`` (journal_tables.py) must behave exactly like this class; one contract test module
(tests/integration/journal_contract.py) runs against both. The helpers at the top (key encoding,
ordering, limits) are shared by both implementations so that orderings and checks cannot drift apart.

Semantics (not pinned by any Azure source; our design):

* ``begin`` creates the event with status ``received``; a second ``begin`` of a known eventId returns
  the stored record (with its steps) unchanged, whatever arguments it is given. Concurrent begins:
  exactly one creates.
* ``record_step`` appends an attempt; re-recording an index appends a new attempt and the latest attempt
  wins when reading. The first step moves ``received`` to ``in_progress``. ``at`` is set by the journal.
* ``finish`` sets a status from ``STATUSES`` and an optional error; an unknown eventId raises NotFound.
* ``history(target)``: events on that target (case-insensitive) whose status is ``completed``, newest
  first by the time they were begun; ties broken by the encoded eventId.
* ``iter_events`` yields headers only (``steps`` empty), ordered by encoded eventId; ``get`` has steps.
* Rejections keep the original body (up to ``BODY_LIMIT`` characters, then truncated and flagged) and
  the field errors; they are never turned into event records (a bad message must not claim an eventId).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shared.errors import FieldError, NotFound, Rejected
from shared.ports import EventRecord, RejectionRecord, StepRecord

Clock = Callable[[], datetime]

STATUSES = frozenset({"received", "in_progress", "completed", "failed", "refused", "rejected"})
EVENT_ID_MAX = 256  # far below the 1 KiB key limit of Table storage even after escaping
BODY_LIMIT = 240_000  # characters of a rejected body kept (8 table properties of 30,000 characters)
TEXT_LIMIT = 30_000  # characters of one free-text field (error, before/after) kept: one table string property
_ESCAPE = "~"
_MAX_TICKS = 10**19 - 1


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """UTC, microseconds, ``Z`` suffix: sorts lexically in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _needs_escape(char: str) -> bool:
    code = ord(char)
    return char in "/\\#?%~'" or code < 0x20 or 0x7F <= code <= 0x9F


def encode_key(value: str) -> str:
    """Injective mapping to a valid PartitionKey/RowKey: ``/ \\ # ?``, control characters, ``%`` and
    ``'`` (troublesome in URLs and OData filters) and the escape character itself become ``~XX``."""
    return "".join(f"{_ESCAPE}{ord(c):02X}" if _needs_escape(c) else c for c in value)


def validate_event_id(event_id: str) -> None:
    """Defence in depth: events are validated upstream, but nothing unbounded or empty reaches a key."""
    if not isinstance(event_id, str) or not event_id:
        raise Rejected([FieldError("eventId", "must be a non-empty string")])
    if len(event_id) > EVENT_ID_MAX:
        raise Rejected([FieldError("eventId", f"longer than {EVENT_ID_MAX} characters")])


def target_key(target: str) -> str:
    return encode_key(target.lower())


def newest_first_key(created: datetime, event_id: str) -> str:
    """Ascending order of this key is newest-first order (inverted microsecond ticks, then the eventId)."""
    ticks = int(created.astimezone(UTC).timestamp() * 1_000_000)
    return f"{_MAX_TICKS - ticks:019d}_{encode_key(event_id)}"


def canonical_plan(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The plan as the journal stores it: JSON, so both implementations return the same shapes."""
    result: dict[str, Any] = json.loads(json.dumps(dict(plan), sort_keys=True, default=str))
    return result


def clamp(text: str | None) -> str | None:
    return text[:TEXT_LIMIT] if text is not None else None


def stamp_step(step: StepRecord, at: str) -> StepRecord:
    """The step as the journal keeps it: its time set, free text clamped."""
    return replace(step, at=at, before=clamp(step.before), after=clamp(step.after), error=clamp(step.error))


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown journal status {status!r}; expected one of {sorted(STATUSES)}")


def new_rejection(
    body: str, errors: Sequence[Mapping[str, str]], event_id: str | None, at: str
) -> RejectionRecord:
    return RejectionRecord(
        rejection_id=uuid.uuid4().hex,
        body=body[:BODY_LIMIT],
        errors=tuple({str(k): str(v) for k, v in e.items()} for e in errors),
        event_id=clamp(event_id),
        at=at,
        truncated=len(body) > BODY_LIMIT,
    )


@dataclass
class _Entry:
    header: EventRecord
    created: datetime
    attempts: list[StepRecord]


class InMemoryJournal:
    """Thread-safe, process-local ``Journal``. Lost with the process: for dry runs and tests only."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, _Entry] = {}
        self._rejections: dict[str, RejectionRecord] = {}

    def begin(
        self, event_id: str, *, event_type: str, target: str, source: str, correlation_id: str,
        plan: Mapping[str, Any],
    ) -> EventRecord:
        validate_event_id(event_id)
        with self._lock:
            if event_id not in self._events:
                now = self._clock()
                header = EventRecord(
                    event_id=event_id, event_type=event_type, target=target, source=source, status="received",
                    correlation_id=correlation_id, plan=canonical_plan(plan),
                    created_at=rfc3339(now), updated_at=rfc3339(now),
                )
                self._events[event_id] = _Entry(header, now, [])
            return self._record(self._events[event_id])

    def get(self, event_id: str) -> EventRecord | None:
        validate_event_id(event_id)
        with self._lock:
            entry = self._events.get(event_id)
            return self._record(entry) if entry else None

    def record_step(self, event_id: str, step: StepRecord) -> None:
        validate_event_id(event_id)
        with self._lock:
            entry = self._entry(event_id)
            now = rfc3339(self._clock())
            entry.attempts.append(stamp_step(step, now))
            if entry.header.status == "received":
                entry.header = replace(entry.header, status="in_progress", updated_at=now)

    def finish(self, event_id: str, status: str, error: str | None = None) -> None:
        validate_event_id(event_id)
        check_status(status)
        with self._lock:
            entry = self._entry(event_id)
            now = rfc3339(self._clock())
            entry.header = replace(entry.header, status=status, error=clamp(error), updated_at=now)

    def record_rejection(self, body: str, errors: Sequence[Mapping[str, str]], event_id: str | None) -> str:
        record = new_rejection(body, errors, event_id, rfc3339(self._clock()))
        with self._lock:
            self._rejections[record.rejection_id] = record
        return record.rejection_id

    def get_rejection(self, rejection_id: str) -> RejectionRecord | None:
        with self._lock:
            return self._rejections.get(rejection_id)

    def iter_rejections(self, event_id: str | None = None) -> Iterator[RejectionRecord]:
        with self._lock:
            found = [r for r in self._rejections.values() if event_id is None or r.event_id == event_id]
        yield from sorted(found, key=lambda r: r.rejection_id)

    def history(self, target: str) -> Iterator[EventRecord]:
        key = target.lower()
        with self._lock:
            matches = [e for e in self._events.values() if e.header.target.lower() == key]
            matches.sort(key=lambda e: newest_first_key(e.created, e.header.event_id))
            records = [self._record(e) for e in matches]
        yield from (r for r in records if r.status == "completed")

    def iter_events(self, status: str | None = None) -> Iterator[EventRecord]:
        with self._lock:
            headers = [e.header for e in self._events.values() if status is None or e.header.status == status]
        yield from sorted(headers, key=lambda h: encode_key(h.event_id))

    def _entry(self, event_id: str) -> _Entry:
        entry = self._events.get(event_id)
        if entry is None:
            raise NotFound(f"journal: no event {event_id!r}")
        return entry

    @staticmethod
    def _record(entry: _Entry) -> EventRecord:
        latest: dict[int, StepRecord] = {}
        for attempt in entry.attempts:
            latest[attempt.index] = attempt
        return replace(entry.header, steps=tuple(latest[i] for i in sorted(latest)))
