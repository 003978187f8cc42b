"""The lifecycle of one event in the journal: its statuses and the one table of allowed transitions.

Every journal (``shared.adapters.journal_tables.TableJournal``, ``shared.adapters.journal_memory``)
calls ``check_transition`` before it changes an event's status, so no path can, say, reopen a completed
event or finish an event twice with different results. The table is the whole state machine:

    received ──▶ in_progress ──▶ completed
        │             │  ▲
        │             ▼  │ (resume: a re-sent event or an operator command retries what is missing)
        ├──────────▶ failed
        └──────────▶ refused

``completed`` and ``refused`` are final. ``failed`` is final for redeliveries of the same message but
can be resumed on purpose (``in_progress`` again), so a group event whose batch was poisoned can finish
the devices it missed without a new eventId.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol, TypeVar


class _Attempt(Protocol):
    @property
    def outcome(self) -> str: ...


T = TypeVar("T", bound=_Attempt)


class EventStatus(StrEnum):
    """Where an event is. ``REJECTED`` is kept for rows written before rejections had their own table."""

    RECEIVED = "received"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUSED = "refused"
    REJECTED = "rejected"


TRANSITIONS: Mapping[EventStatus, frozenset[EventStatus]] = {
    EventStatus.RECEIVED: frozenset({EventStatus.IN_PROGRESS, EventStatus.COMPLETED, EventStatus.FAILED,
                                     EventStatus.REFUSED}),
    EventStatus.IN_PROGRESS: frozenset({EventStatus.IN_PROGRESS, EventStatus.COMPLETED, EventStatus.FAILED}),
    EventStatus.FAILED: frozenset({EventStatus.IN_PROGRESS}),
    EventStatus.COMPLETED: frozenset(),
    EventStatus.REFUSED: frozenset(),
    EventStatus.REJECTED: frozenset(),
}

# Statuses after which a redelivery of the same message changes nothing.
FINISHED = frozenset({EventStatus.COMPLETED, EventStatus.FAILED, EventStatus.REFUSED, EventStatus.REJECTED})


class IllegalTransition(ValueError):
    """A status change the table does not allow: a bug in the caller, never retried."""


def check_transition(current: str, new: str) -> EventStatus:
    """``new`` as an ``EventStatus`` when the table allows ``current`` → ``new``; else
    ``IllegalTransition``."""
    try:
        before, after = EventStatus(current), EventStatus(new)
    except ValueError as exc:
        raise IllegalTransition(f"unknown event status in {current!r} -> {new!r}") from exc
    if after not in TRANSITIONS[before]:
        raise IllegalTransition(f"event status {before} cannot become {after}")
    return after


def is_finished(status: str) -> bool:
    return status in FINISHED


class BatchState(StrEnum):
    """A scale-out batch of one group step: recorded with its device set before its message is sent."""

    EMITTED = "emitted"
    APPLIED = "applied"
    FAILED = "failed"


# applied is final: a redelivered or duplicated message never applies a batch twice nor rewrites its counts.
# failed → emitted: a resumed group event sends the batch again.
BATCH_TRANSITIONS: Mapping[BatchState, frozenset[BatchState]] = {
    BatchState.EMITTED: frozenset({BatchState.APPLIED, BatchState.FAILED}),
    BatchState.FAILED: frozenset({BatchState.EMITTED}),
    BatchState.APPLIED: frozenset(),
}


def batch_may_become(current: str, new: str) -> bool:
    """Whether a batch in ``current`` may move to ``new`` (unknown states never move)."""
    try:
        return BatchState(new) in BATCH_TRANSITIONS[BatchState(current)]
    except ValueError:
        return False


class EmissionState(StrEnum):
    """One emission run of a group step: claimed by exactly one writer, then every batch recorded."""

    EMITTING = "emitting"
    RECORDED = "recorded"


_SUCCESS = frozenset({"done", "already_done"})


def effective_attempt(attempts: Sequence[T]) -> T:
    """The attempt that stands for a step: the FIRST that succeeded, else the latest.

    A step that succeeded stays succeeded with the change it made: a later duplicate attempt that found
    nothing left to do (``already_done``) or failed must not hide who changed what.
    """
    for attempt in attempts:
        if attempt.outcome in _SUCCESS:
            return attempt
    return attempts[-1]
