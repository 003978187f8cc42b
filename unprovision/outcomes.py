"""What an event came to, which of its steps are done, and the ONE table mapping errors to what entry
points do.

Entry points (queue, HTTP, work-queue triggers, CLI) call ``classify(exc)`` and act on the ``Disposition``:
ack or raise for redelivery, and which HTTP status to answer. ``Outcome`` is the result the engine returns,
the journal can rebuild and the notifier publishes (``to_dict`` is JSON-ready).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.errors import (
    AuthFailed,
    Conflict,
    HubNotConfigured,
    NotFound,
    Permanent,
    PreconditionFailed,
    Rejected,
    Throttled,
    Transient,
    UnprovisionError,
)
from shared.lifecycle import EventStatus, effective_attempt
from shared.plan import Plan, StepOutcome, plan_from_dict, plan_to_dict
from shared.ports import EventRecord, Notifier, StepRecord


class Answer(StrEnum):
    """Outcomes an entry point gives that are not journal statuses (``EventStatus`` covers the rest)."""

    DRY_RUN = "dry_run"
    CONFLICT = "conflict"  # the eventId is taken by an event with another body
    FORBIDDEN = "forbidden"  # force without the authority to force


OutcomeStatus = EventStatus | Answer

_OK = frozenset({StepOutcome.DONE, StepOutcome.ALREADY_DONE})


def plan_steps(record: EventRecord, plan: Plan | None) -> dict[int, StepRecord]:
    """The standing attempt of each plan step (``shared.lifecycle.effective_attempt`` per index).

    Rows beyond the plan are left out: journals written before batches had records of their own kept
    scale-out bookkeeping in step rows at indices 100,000 and above."""
    limit = len(plan.steps) if plan is not None else None
    by_index: dict[int, list[StepRecord]] = {}
    for step in record.steps:
        if limit is None or step.index < limit:
            by_index.setdefault(step.index, []).append(step)
    return {i: effective_attempt(by_index[i]) for i in sorted(by_index)}


def done_indices(record: EventRecord | None, plan: Plan | None) -> frozenset[int]:
    """THE answer to "which steps are done": plan steps whose standing attempt is done or already done."""
    if record is None:
        return frozenset()
    return frozenset(i for i, step in plan_steps(record, plan).items() if step.outcome in _OK)


@dataclass(frozen=True)
class Outcome:
    event_id: str
    status: OutcomeStatus
    steps: tuple[StepRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    plan: Plan | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "status": str(self.status),
            "steps": [_drop_none({
                "index": s.index, "kind": s.kind, "target": s.target, "outcome": s.outcome, "hub": s.hub,
                "before": s.before, "after": s.after, "error": s.error,
            }) for s in self.steps],
            "warnings": list(self.warnings),
            "plan": plan_to_dict(self.plan) if self.plan is not None else None,
            "error": self.error,
        }

    @classmethod
    def from_record(cls, record: EventRecord) -> Outcome:
        """The stored outcome of an event: the standing attempt of each step, in plan order."""
        plan = plan_from_dict(record.plan) if record.plan else None
        return cls(
            event_id=record.event_id, status=EventStatus(record.status),
            steps=tuple(plan_steps(record, plan).values()), warnings=plan.warnings if plan else (),
            plan=plan, error=record.error,
        )


def publish_recorded(notifier: Notifier, record: EventRecord) -> None:
    """Publish a finished event's stored outcome (its correlationId included) to the notifier."""
    published = Outcome.from_record(record).to_dict()
    notifier.publish({**published, "correlationId": record.correlation_id or None})


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# ------------------------------------------------------------------------------------------------------
# Errors -> dispositions
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disposition:
    """What an entry point does with an error: the outcome status, retry (raise so the host redelivers) or
    ack, and the HTTP status for the operator API."""

    status: str
    retry: bool
    http_status: int
    code: str
    retry_after: float | None = None
    details: tuple[Mapping[str, str], ...] = field(default_factory=tuple)


# Most specific first: the first matching class wins. HTTP codes are this app's choice (see docs/engine.md):
# 503 = try later, 502 = an upstream refused us or is not configured (not the caller's fault),
# 404/409/422 = the request cannot succeed as it stands.
_TABLE: tuple[tuple[type[BaseException], str, bool, int, str], ...] = (
    (Rejected, "rejected", False, 400, "invalid_event"),
    (Throttled, "in_progress", True, 503, "throttled"),
    (PreconditionFailed, "in_progress", True, 503, "concurrent_change"),
    (Transient, "in_progress", True, 503, "transient"),
    (AuthFailed, "failed", False, 502, "upstream_auth_failed"),
    (HubNotConfigured, "failed", False, 502, "hub_not_configured"),
    (NotFound, "failed", False, 404, "not_found"),
    (Conflict, "failed", False, 409, "conflict"),
    (Permanent, "failed", False, 422, "permanent"),
    (UnprovisionError, "failed", False, 500, "error"),
)


def classify(exc: BaseException) -> Disposition:
    """The disposition for ``exc``. Anything outside the hierarchy is a bug: 500 and retried, so the host's
    bounded redelivery (then the poison queue) keeps the message rather than losing it."""
    for cls, status, retry, http, code in _TABLE:
        if isinstance(exc, cls):
            retry_after = exc.retry_after if isinstance(exc, Transient) else None
            details = tuple({"field": e.field, "reason": e.reason} for e in exc.errors) \
                if isinstance(exc, Rejected) else ()
            return Disposition(status, retry, http, code, retry_after, details)
    return Disposition("failed", True, 500, "internal_error")


# Outcome status -> HTTP status for the operator API; 202 while group work is still running.
_HTTP_BY_STATUS: Mapping[str, int] = {
    EventStatus.COMPLETED: 200, Answer.DRY_RUN: 200, EventStatus.IN_PROGRESS: 202,
    EventStatus.RECEIVED: 202, EventStatus.REFUSED: 409, Answer.CONFLICT: 409, EventStatus.REJECTED: 400,
    Answer.FORBIDDEN: 403, EventStatus.FAILED: 422,
}


def http_status(outcome: Outcome) -> int:
    return _HTTP_BY_STATUS.get(outcome.status, 500)
