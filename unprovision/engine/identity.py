"""Telling events apart: an eventId names exactly one event body.

The journal keeps a fingerprint of the body an eventId was first seen with. A delivery whose body differs is
a different event that reuses the ID: it is refused as a conflict, never applied as the first and never
dropped silently (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json

from shared.events import LifecycleEvent
from shared.ports import EventRecord


def fingerprint(event: LifecycleEvent) -> str:
    """sha256 of the validated event in canonical JSON (wire names, sorted keys, absent fields left out), so
    the same event re-sent with other spacing or key order has the same fingerprint."""
    canonical = json.dumps(event.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def same_event(record: EventRecord, event: LifecycleEvent, print_: str) -> bool:
    """Whether ``record`` was begun by this event. Rows written before fingerprints existed are compared on
    what they kept: the type and the target (case-insensitive, as DPS IDs are)."""
    if record.fingerprint is not None:
        return record.fingerprint == print_
    return record.event_type == str(event.type) and record.target.lower() == event.target.lower()


def conflict_reason(record: EventRecord) -> str:
    return (f"eventId is already used by another event ({record.event_type} on {record.target}, "
            f"status {record.status}); send this event with a new eventId")
