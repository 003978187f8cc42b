"""How the journal keeps things, whatever the store: keys, orderings, limits and checks.

Both journals (``journal_tables.TableJournal`` and ``journal_memory.InMemoryJournal``) use these, so
orderings and checks cannot drift apart; one contract test module (tests/integration/journal_contract.py)
runs against both.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import FieldError, Rejected
from shared.events import utf16_units
from shared.ports import RejectionRecord, StepRecord

Clock = Callable[[], datetime]

EVENT_ID_MAX = 256  # far below the 1 KiB key limit of Table storage even after escaping
# Limits count UTF-16 code units, as Table storage does (a string property holds 64 KiB = 32K units; an
# emoji is two units): every limit below fits the store whatever the characters.
BODY_LIMIT = 240_000  # units of a rejected body kept (8 table properties of 30,000 units)
TEXT_LIMIT = 30_000  # units of one free-text field (error, before/after) kept: one table string property
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


def cut_units(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` UTF-16 units (never half a surrogate pair)."""
    if len(text) * 2 <= limit:
        return text
    units = 0
    for i, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:i]
    return text


def split_units(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-16 units each (at least one piece, maybe empty)."""
    pieces: list[str] = []
    while text:
        piece = cut_units(text, limit)
        pieces.append(piece)
        text = text[len(piece):]
    return pieces or [""]


def clamp(text: str | None) -> str | None:
    return cut_units(text, TEXT_LIMIT) if text is not None else None


def stamp_step(step: StepRecord, at: str) -> StepRecord:
    """The step as the journal keeps it: its time set, free text clamped."""
    return replace(step, at=at, before=clamp(step.before), after=clamp(step.after), error=clamp(step.error))


def new_rejection(
    body: str, errors: Sequence[Mapping[str, str]], event_id: str | None, at: str
) -> RejectionRecord:
    return RejectionRecord(
        rejection_id=uuid.uuid4().hex,
        body=cut_units(body, BODY_LIMIT),
        errors=tuple({str(k): str(v) for k, v in e.items()} for e in errors),
        event_id=clamp(event_id),
        at=at,
        truncated=utf16_units(body) > BODY_LIMIT,
    )


def expires_at(now: datetime, ttl_seconds: float) -> str:
    """When a target lease taken at ``now`` runs out (RFC 3339, sorts in time order)."""
    return rfc3339(now + timedelta(seconds=ttl_seconds))
