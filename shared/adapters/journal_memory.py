"""The journal in memory: the reference semantics of ``Journal``, for ``--dry-run`` and service tests.

``TableJournal`` (journal_tables.py) must behave exactly like this class; one contract test module
(tests/integration/journal_contract.py) runs against both. Keys, orderings and limits are
``journal_format``'s, shared by both.

Semantics (not pinned by any Azure source; our design):

* ``begin`` creates the event with status ``received``; a second ``begin`` of a known eventId returns
  the stored record unchanged (the engine compares fingerprints). Concurrent begins: exactly one creates.
* ``record_step`` appends an attempt; reading keeps one attempt per index (``shared.lifecycle
  .effective_attempt``: the first that succeeded, else the latest). The first step moves ``received`` to
  ``in_progress``. ``at`` is set by the journal.
* ``finish`` changes the status as ``shared.lifecycle.check_transition`` allows; an unknown eventId raises
  NotFound, a forbidden change ``IllegalTransition``.
* ``history(target)``: every event on that target (case-insensitive), newest first by the time it was
  begun; ties broken by the encoded eventId.
* ``iter_events`` yields headers only (``steps`` empty), ordered by encoded eventId; ``get`` has steps.
* Target leases, emission runs and batches: see the ``Journal`` port.
* Rejections keep the original body (up to ``BODY_LIMIT`` UTF-16 units, then truncated and flagged) and
  the field errors; they are never turned into event records (a bad message must not claim an eventId).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.journal_format import (
    Clock,
    canonical_plan,
    clamp,
    encode_key,
    new_rejection,
    newest_first_key,
    rfc3339,
    stamp_step,
    utc_now,
    validate_event_id,
)
from shared.errors import Conflict, NotFound
from shared.lifecycle import EmissionState, EventStatus, batch_may_become, check_transition, effective_attempt
from shared.ports import BatchRecord, EmissionRecord, EventRecord, RejectionRecord, StepRecord


@dataclass
class _Entry:
    header: EventRecord
    created: datetime
    attempts: list[StepRecord]
    emissions: dict[tuple[int, int], EmissionRecord] = field(default_factory=dict)
    batches: dict[tuple[int, int, int], BatchRecord] = field(default_factory=dict)


class InMemoryJournal:
    """Thread-safe, process-local ``Journal``. Lost with the process: for dry runs and tests only."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, _Entry] = {}
        self._rejections: dict[str, RejectionRecord] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}

    def begin(
        self, event_id: str, *, event_type: str, target: str, source: str, correlation_id: str,
        plan: Mapping[str, Any], fingerprint: str | None = None,
    ) -> EventRecord:
        validate_event_id(event_id)
        with self._lock:
            if event_id not in self._events:
                now = self._clock()
                header = EventRecord(
                    event_id=event_id, event_type=event_type, target=target, source=source,
                    status=EventStatus.RECEIVED, correlation_id=correlation_id, plan=canonical_plan(plan),
                    created_at=rfc3339(now), updated_at=rfc3339(now), fingerprint=fingerprint,
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
            if entry.header.status == EventStatus.RECEIVED:
                status = check_transition(entry.header.status, EventStatus.IN_PROGRESS)
                entry.header = replace(entry.header, status=status, updated_at=now)

    def finish(self, event_id: str, status: str, error: str | None = None) -> None:
        validate_event_id(event_id)
        with self._lock:
            entry = self._entry(event_id)
            new = check_transition(entry.header.status, status)
            now = rfc3339(self._clock())
            entry.header = replace(entry.header, status=new, error=clamp(error), updated_at=now)

    # -- target leases -----------------------------------------------------------------------------------

    def claim_target(self, target: str, holder: str, ttl_seconds: float) -> bool:
        key = target.lower()
        with self._lock:
            now = self._clock()
            current = self._leases.get(key)
            if current is not None and current[0] != holder and current[1] > now:
                return False
            self._leases[key] = (holder, now + timedelta(seconds=ttl_seconds))
            return True

    def release_target(self, target: str, holder: str) -> None:
        key = target.lower()
        with self._lock:
            current = self._leases.get(key)
            if current is not None and current[0] == holder:
                del self._leases[key]

    # -- scale-out emission and batches ----------------------------------------------------------------

    def start_emission(self, event_id: str, step_index: int, run: int) -> bool:
        with self._lock:
            entry = self._entry(event_id)
            if (step_index, run) in entry.emissions:
                return False
            entry.emissions[(step_index, run)] = EmissionRecord(
                step_index, run, EmissionState.EMITTING, at=rfc3339(self._clock()))
            return True

    def record_batch(self, event_id: str, batch: BatchRecord) -> None:
        with self._lock:
            entry = self._entry(event_id)
            key = (batch.step_index, batch.run, batch.number)
            if key in entry.batches:
                raise Conflict(f"journal: batch {key} of {event_id!r} exists already")
            entry.batches[key] = replace(batch, at=rfc3339(self._clock()))

    def end_emission(self, event_id: str, step_index: int, run: int, batches: int) -> None:
        with self._lock:
            entry = self._entry(event_id)
            entry.emissions[(step_index, run)] = EmissionRecord(
                step_index, run, EmissionState.RECORDED, batches, at=rfc3339(self._clock()))

    def latest_emission(self, event_id: str, step_index: int) -> EmissionRecord | None:
        with self._lock:
            entry = self._entry(event_id)
            runs = [e for (index, _), e in entry.emissions.items() if index == step_index]
            return max(runs, key=lambda e: e.run) if runs else None

    def batches(self, event_id: str, step_index: int, run: int) -> tuple[BatchRecord, ...]:
        with self._lock:
            entry = self._entry(event_id)
            found = [b for (i, r, _), b in entry.batches.items() if (i, r) == (step_index, run)]
            return tuple(sorted(found, key=lambda b: b.number))

    def settle_batch(self, event_id: str, batch: BatchRecord) -> bool:
        with self._lock:
            entry = self._entry(event_id)
            key = (batch.step_index, batch.run, batch.number)
            stored = entry.batches.get(key)
            if stored is None or not batch_may_become(stored.state, batch.state):
                return False
            entry.batches[key] = replace(batch, device_ids=stored.device_ids, error=clamp(batch.error),
                                         at=rfc3339(self._clock()))
            return True

    # -- rejections, listings ----------------------------------------------------------------------------

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
        yield from records

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
        by_index: dict[int, list[StepRecord]] = {}
        for attempt in entry.attempts:
            by_index.setdefault(attempt.index, []).append(attempt)
        steps = tuple(effective_attempt(by_index[i]) for i in sorted(by_index))
        return replace(entry.header, steps=steps)
