"""Entry functions shared by every trigger and the CLI: parse, call the engine, map errors with ``classify``.

Triggers stay wiring only: they hand the raw body to a function here and turn the result into their own
answer (ack/raise for queues, an HTTP answer in ``unprovision.triggers.http``). Every error → outcome
decision goes through ``unprovision.outcomes.classify`` (one table): a disposition with ``retry`` is
re-raised so the host redelivers; any other is recorded and answered.

Recording ("nothing is lost"):
* a body that fails validation is kept with its field errors (``journal.record_rejection``) and acknowledged;
* a permanent error before the engine journaled anything (e.g. DPS refused our credentials while reading the
  inventory) is journaled as a ``failed`` event with no plan, so the eventId shows what happened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import FieldError, Rejected
from shared.events import LifecycleEvent, claimed_event_id, parse_event_body
from shared.ids import event_id_problem
from shared.lifecycle import EventStatus, is_finished
from shared.logfields import log_fields
from shared.ports import EventRecord
from unprovision.engine.identity import conflict_reason, fingerprint, same_event
from unprovision.group import scaleout
from unprovision.group.inprocess import ProgressFn
from unprovision.outcomes import Outcome, classify
from unprovision.storm import coalesce, flush
from unprovision.wiring import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandledOutcome(Outcome):
    """An ``Outcome`` decided by an entry point rather than the engine: a rejection (with field ``errors``) or
    an error the engine did not journal (``code``, ``http``) — from ``classify``."""

    code: str | None = None
    http: int | None = None
    errors: tuple[Mapping[str, str], ...] = ()
    rejection_id: str | None = None


def _text(body: str | bytes) -> str:
    """For keeping a rejected body: bytes that are not UTF-8 are kept with replacement characters (the
    rejection says why; the body is evidence, never parsed again)."""
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body


def reject(body: str | bytes, exc: Rejected, services: Services) -> HandledOutcome:
    """Keep the message with its field errors; the returned outcome is acknowledged, never retried."""
    disposition = classify(exc)
    event_id = claimed_event_id(body)
    rejection_id = services.journal.record_rejection(_text(body), list(disposition.details), event_id)
    log_fields(log, logging.WARNING, f"message rejected (rejection {rejection_id}): {exc}", event_id=event_id,
               step="validate", outcome=EventStatus.REJECTED.value, error=type(exc).__name__)
    return HandledOutcome(event_id or "", EventStatus.REJECTED, error=str(exc), code=disposition.code,
                          http=disposition.http_status, errors=disposition.details, rejection_id=rejection_id)


def log_outcome(logger: logging.Logger, text: str, outcome: Outcome, **more: Any) -> None:
    """A trigger's outcome line with the structured properties (shared/logfields.py; docs/operations.md):
    ``step=event``, ``outcome`` the status answered, ``target`` from the plan when there is one."""
    bad = str(outcome.status) in (EventStatus.FAILED, EventStatus.REJECTED, EventStatus.REFUSED, "conflict",
                                  "forbidden")
    log_fields(logger, logging.WARNING if bad else logging.INFO, text, event_id=outcome.event_id or None,
               target=outcome.plan.target if outcome.plan is not None else None, step="event",
               outcome=str(outcome.status), **more)


def handle_event_body(body: str | bytes, services: Services, *, dry_run: bool = False,
                      force_allowed: bool = False, progress: ProgressFn | None = None) -> Outcome:
    """Validate and apply one lifecycle event. Returns its outcome; raises only what must be redelivered."""
    try:
        event = parse_event_body(body)
    except Rejected as exc:
        return reject(body, exc, services)
    return handle_event(event, services, dry_run=dry_run, force_allowed=force_allowed, progress=progress)


def handle_event(event: LifecycleEvent, services: Services, *, dry_run: bool = False,
                 force_allowed: bool = False, progress: ProgressFn | None = None) -> Outcome:
    """Apply a validated event through the engine; errors are classified here, once."""
    try:
        return services.engine.apply(event, dry_run=dry_run, force_allowed=force_allowed, progress=progress)
    except Exception as exc:
        disposition = classify(exc)
        props = {"event_id": event.event_id, "correlation_id": event.correlation_id or event.event_id,
                 "target": event.target, "step": "apply", "error": type(exc).__name__}
        if disposition.retry:
            log_fields(log, logging.WARNING, "event will be retried", **props,
                       outcome="throttled" if disposition.code == "throttled" else "transient")
            raise
        log_fields(log, logging.WARNING, f"event not applied ({disposition.code})", **props,
                   outcome=str(disposition.status))
        outcome = HandledOutcome(event.event_id, EventStatus(disposition.status),
                                 error=f"{disposition.code}: {exc}", code=disposition.code,
                                 http=disposition.http_status)
        if not dry_run:
            _record_failure(event, outcome, services)
        return outcome


def _record_failure(event: LifecycleEvent, outcome: Outcome, services: Services) -> None:
    journal = services.journal
    print_ = fingerprint(event)
    record = journal.begin(event.event_id, event_type=str(event.type), target=event.target,
                           source=event.source, correlation_id=event.correlation_id or event.event_id,
                           plan={}, fingerprint=print_)
    if not same_event(record, event, print_):  # another body holds the eventId: never fail its event
        body = event.model_dump_json(by_alias=True, exclude_none=True)
        errors = [{"field": "eventId", "reason": conflict_reason(record)}]
        journal.record_rejection(body, errors, event.event_id)
        return
    if not is_finished(record.status):
        journal.finish(event.event_id, EventStatus.FAILED, outcome.error)


def handle_work_batch(body: str | bytes, services: Services, *, last_delivery: bool = False) -> Outcome:
    """One group fan-out batch, as the journal recorded it; completes the group event when it was the last.

    A message that names no recorded batch (forged, or from before batches were recorded) is rejected and
    journaled, never applied."""
    try:
        message = json.loads(body)
        if flush.is_flush(message):
            return handle_flush(message, services, last_delivery=last_delivery)
        ref = scaleout.BatchRef.from_message(message)
    except ValueError:
        return reject(body, Rejected([FieldError("$", "not JSON")], "invalid work batch"), services)
    except Rejected as exc:
        return reject(body, exc, services)
    try:
        scaleout.apply_batch(ref, registries=services.registries, journal=services.journal,
                             limiter=services.rate_limiter, notifier=services.notifier,
                             last_delivery=last_delivery)
    except Rejected as exc:
        return reject(body, exc, services)
    record = services.journal.get(ref.event_id)
    return Outcome.from_record(record) if record else Outcome(ref.event_id, EventStatus.FAILED)


def handle_flush(message: Any, services: Services, *, last_delivery: bool) -> Outcome:
    """Drain the pending set of the hub a flush message names (``unprovision.storm.flush``); ``Rejected``
    for a hub this app does not know, or when storm coalescing is not wired."""
    storm = services.engine.storm
    if storm is None:
        raise Rejected([FieldError("flushHub", "storm coalescing is off in this app")],
                       "invalid flush message")
    hub = flush.parse_flush(message, list(services.registries.hubs()))
    ports = coalesce.Apply(services.registries, services.journal, services.notifier)
    finished = flush.flush(hub, storm, ports, last_delivery=last_delivery)
    return Outcome(f"flush:{hub}", EventStatus.COMPLETED, warnings=(f"{finished} events finished",))


def check_event_id(event_id: str) -> str:
    """Validate an eventId taken from a URL or command line before it reaches a store query."""
    problem = event_id_problem(event_id)
    if problem:
        raise Rejected([FieldError("eventId", problem)], "invalid eventId")
    return event_id


def event_status(event_id: str, services: Services) -> dict[str, Any] | None:
    """The journal's record of an event as JSON (None when unknown), with group batch progress."""
    record = services.journal.get(check_event_id(event_id))
    if record is None:
        return None
    document = Outcome.from_record(record).to_dict()
    document.update(journal_fields(record, services))
    return document


def journal_fields(record: EventRecord, services: Services) -> dict[str, Any]:
    """Header fields the outcome does not carry, and the progress of scale-out group steps."""
    fields: dict[str, Any] = {"type": record.event_type, "target": record.target, "source": record.source,
                              "correlationId": record.correlation_id, "createdAt": record.created_at,
                              "updatedAt": record.updated_at}
    progress = []
    for index in sorted({s.index for s in record.steps}):
        state = scaleout.progress(services.journal, record.event_id, index)
        if state is not None:
            progress.append({"stepIndex": index, "batchesDone": state.settled,
                             "batchesExpected": state.expected, "batchesFailed": state.failed_batches,
                             "devices": state.tally.summary()})
    if progress:
        fields["groupProgress"] = progress
    return fields
