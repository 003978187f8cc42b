"""Entry points shared by every trigger and the CLI: parse, run the engine, map errors with ``classify``.

Triggers stay wiring only: they hand the raw body to a function here and turn the result into their
own answer (ack/raise for queues, an ``HttpAnswer`` for HTTP). Every error → outcome decision goes through
``unprovision.outcomes.classify`` (one table): a disposition with ``retry`` is re-raised so the host
redelivers; any other is recorded and answered.

Recording ("nothing is lost"):
* a body that fails validation is kept with its field errors (``journal.record_rejection``) and acknowledged;
* a permanent error before the engine journaled anything (e.g. DPS refused our credentials while reading the
  inventory) is journaled as a ``failed`` event with no plan, so the eventId shows what happened. Like any
  finished event, a redelivery of the same eventId then returns that outcome (operators resend with a new
  eventId once the cause is fixed). This is this app's choice, not pinned by a documented source.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shared.errors import FieldError, Rejected
from shared.events import parse_event
from shared.plan import StepOutcome
from shared.ports import EventRecord, StepRecord
from unprovision import groupwork, orchestrator
from unprovision.groupwork import GroupWork, ProgressFn
from unprovision.inventory import event_key
from unprovision.outcomes import TERMINAL, Outcome, classify, http_status
from unprovision.wiring import Services

log = logging.getLogger(__name__)

MAX_BODY = 240_000  # characters; the journal keeps rejected bodies up to this size
_EVENT_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_ACTIONS = frozenset(groupwork.ACTIONS.values())


@dataclass(frozen=True)
class HandledOutcome(Outcome):
    """An ``Outcome`` decided by an entry point rather than the engine: a rejection (with field ``errors``) or
    an error the engine did not journal (``code``, ``http``) — from ``classify``."""

    code: str | None = None
    http: int | None = None
    errors: tuple[Mapping[str, str], ...] = ()
    rejection_id: str | None = None


def response_status(outcome: Outcome) -> int:
    """The HTTP status for an outcome: the classified one when the entry point decided, else the engine's."""
    if isinstance(outcome, HandledOutcome) and outcome.http is not None:
        return outcome.http
    return http_status(outcome)


def _text(body: str | bytes) -> str:
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body


def _claimed_event_id(text: str) -> str | None:
    """The eventId a rejected body names, when it names a usable one (kept with the rejection)."""
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    value = raw.get("eventId") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and _EVENT_ID.match(value) else None


def reject(text: str, exc: Rejected, services: Services) -> HandledOutcome:
    """Keep the message with its field errors; the returned outcome is acknowledged, never retried."""
    disposition = classify(exc)
    event_id = _claimed_event_id(text)
    rejection_id = services.journal.record_rejection(text, list(disposition.details), event_id)
    log.warning("rejected message %s (eventId %s): %s", rejection_id, event_id, exc)
    return HandledOutcome(event_id or "", "rejected", error=str(exc), code=disposition.code,
                          http=disposition.http_status, errors=disposition.details, rejection_id=rejection_id)


def handle_event_body(body: str | bytes, services: Services, *, dry_run: bool = False,
                      progress: ProgressFn | None = None) -> Outcome:
    """Validate and apply one lifecycle event. Returns its outcome; raises only what must be redelivered."""
    text = _text(body)
    try:
        event = _parse(text)
    except Rejected as exc:
        return reject(text[:MAX_BODY], exc, services)
    try:
        return orchestrator.apply(
            event, dps=services.dps, registries=services.registries, journal=services.journal,
            policy=services.policy, notifier=services.notifier, dry_run=dry_run, progress=progress,
            group_work=group_work(services), group_cache=services.group_cache)
    except Exception as exc:
        disposition = classify(exc)
        if disposition.retry:
            log.warning("event %s will be retried: %s", event.event_id, type(exc).__name__)
            raise
        outcome = HandledOutcome(event.event_id, disposition.status, error=f"{disposition.code}: {exc}",
                                 code=disposition.code, http=disposition.http_status)
        if not dry_run:
            _record_failure(event, outcome, services)
        return outcome


def _parse(text: str) -> Any:
    if len(text) > MAX_BODY:
        raise Rejected([FieldError("$", f"body longer than {MAX_BODY} characters")], "invalid event")
    return parse_event(text)


def group_work(services: Services) -> GroupWork:
    """Scale out through the work queue when there is one; else purge in process (CLI), where hubs with at
    least ``GROUP_IMPORT_JOB_THRESHOLD`` devices take an import job when ``services.import_jobs`` is set."""
    queue = services.work_queue
    return GroupWork(limiter=services.rate_limiter, scale_out=queue is not None, queue=queue,
                     import_job_threshold=services.settings.group_import_job_threshold,
                     import_jobs=services.import_jobs)


def _record_failure(event: Any, outcome: Outcome, services: Services) -> None:
    key = event_key(event)
    journal = services.journal
    record = journal.begin(key.event_id, event_type=key.event_type, target=key.target, source=key.source,
                           correlation_id=key.correlation_id, plan={})
    if record.status not in TERMINAL:
        journal.finish(key.event_id, "failed", outcome.error)


def _batch_errors(batch: Any) -> list[FieldError]:
    if not isinstance(batch, dict):
        return [FieldError("$", "must be a JSON object")]
    errors = [FieldError(name, "must be a non-empty string") for name in ("eventId", "groupId", "hub")
              if not isinstance(batch.get(name), str) or not batch.get(name)]
    errors += [FieldError(name, "must be a whole number") for name in ("batch", "run", "stepIndex")
               if not isinstance(batch.get(name), int) or isinstance(batch.get(name), bool)]
    if batch.get("action") not in _ACTIONS:
        errors.append(FieldError("action", f"must be one of {sorted(_ACTIONS)}"))
    ids = batch.get("deviceIds")
    if not isinstance(ids, list) or not 0 < len(ids) <= groupwork.BATCH_LIMIT \
            or not all(isinstance(i, str) and i for i in ids):
        errors.append(FieldError("deviceIds", f"must be a list of 1..{groupwork.BATCH_LIMIT} device IDs"))
    return errors


def handle_work_batch(body: str | bytes, services: Services) -> Outcome:
    """One group fan-out batch; completes the group event when it was the last. Returns the event's state."""
    text = _text(body)
    try:
        batch = json.loads(text)
    except ValueError:
        batch = None
    errors = _batch_errors(batch)
    if errors:
        return reject(text[:MAX_BODY], Rejected(errors, "invalid work batch"), services)
    try:
        groupwork.apply_batch(batch, services.registries, services.journal, services.rate_limiter,
                              notifier=services.notifier)
    except Exception as exc:
        if classify(exc).retry:
            raise
        _record_failed_batch(batch, exc, services)
    record = services.journal.get(batch["eventId"])
    return Outcome.from_record(record) if record else Outcome(batch["eventId"], "unknown")


def _record_failed_batch(batch: Mapping[str, Any], exc: Exception, services: Services) -> None:
    """A permanent failure (e.g. the hub refused our credentials) fails the batch's devices, in the format
    ``groupwork`` records batches, so the group event still completes (as failed) instead of hanging."""
    log.error("batch %s of %s failed: %s", batch["batch"], batch["eventId"], type(exc).__name__)
    kind = next(k for k, action in groupwork.ACTIONS.items() if action == batch["action"])
    index = int(batch["stepIndex"])
    services.journal.record_step(str(batch["eventId"]), StepRecord(
        groupwork.batch_index(index, int(batch["batch"])), kind.value, str(batch["groupId"]),
        StepOutcome.FAILED.value, hub=str(batch["hub"]), before=f"batch:{batch['run']}:{batch['batch']}",
        after=f"changed=0 unchanged=0 failed={len(batch['deviceIds'])}",
        error=f"{type(exc).__name__}: {exc}"))
    groupwork.complete_if_done(services.journal, str(batch["eventId"]), index, services.notifier)


def check_event_id(event_id: str) -> str:
    """Validate an eventId taken from a URL or command line before it reaches a store query."""
    if not _EVENT_ID.match(event_id):
        raise Rejected([FieldError("eventId", "1-128 characters, no control characters")], "invalid eventId")
    return event_id


def event_status(event_id: str, services: Services) -> dict[str, Any] | None:
    """The journal's record of an event as JSON (None when unknown), with group batch progress."""
    record = services.journal.get(check_event_id(event_id))
    if record is None:
        return None
    document = Outcome.from_record(record).to_dict()
    document.update(journal_fields(record))
    return document


def journal_fields(record: EventRecord) -> dict[str, Any]:
    """Header fields the outcome does not carry, and the progress of scale-out group steps."""
    fields: dict[str, Any] = {"type": record.event_type, "target": record.target, "source": record.source,
                              "correlationId": record.correlation_id, "createdAt": record.created_at,
                              "updatedAt": record.updated_at}
    indices = sorted({s.index for s in record.steps if s.index <= groupwork.MAX_SCALE_OUT_INDEX})
    progress = [{"stepIndex": i, "batchesDone": done, "batchesExpected": expected}
                for i in indices for done, expected in [groupwork.batch_progress(record, i)]
                if expected is not None]
    if progress:
        fields["groupProgress"] = progress
    return fields


def run_audit_now(services: Services, remediate: bool) -> Any:
    """Run the audit on the configured ports; remediations go through the engine like any event."""
    from unprovision.audit import run_audit

    def apply(event: Any) -> Any:
        return orchestrator.apply(event, dps=services.dps, registries=services.registries,
                                  journal=services.journal, policy=services.policy,
                                  notifier=services.notifier, group_cache=services.group_cache)

    return run_audit(dps=services.dps, registries=services.registries, journal=services.journal,
                     poison=services.poison, reports=services.reports, suppressions=services.suppressions,
                     now=datetime.now(UTC), settings=services.settings, remediate=remediate,
                     apply_fn=apply if remediate else None)


@dataclass(frozen=True)
class HttpAnswer:
    """What an HTTP trigger returns: status, JSON body, headers."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def http_unprovision(body: bytes, services: Services, *, dry_run: bool, status_base: str) -> HttpAnswer:
    """``POST /api/unprovision``: 200 done / dry run, 202 group work running (Location), 400/409/422/5xx."""
    try:
        outcome = handle_event_body(body, services, dry_run=dry_run)
    except Exception as exc:  # noqa: BLE001 - classify() decides, unknown errors included (500)
        return error_answer(exc)
    status = response_status(outcome)
    if isinstance(outcome, HandledOutcome) and outcome.status == "rejected":
        body_doc: dict[str, Any] = {"error": "invalid event", "errors": list(outcome.errors),
                                    "rejectionId": outcome.rejection_id}
        return HttpAnswer(status, body_doc)
    location = f"{status_base.rstrip('/')}/{quote(outcome.event_id, safe='')}"
    headers = {"Location": location} if status == 202 else {}
    document = outcome.to_dict()
    if isinstance(outcome, HandledOutcome):
        document["code"] = outcome.code
    return HttpAnswer(status, document, headers)


def error_answer(exc: BaseException) -> HttpAnswer:
    """An error the caller may retry (503 + Retry-After) or that is not theirs to fix, via ``classify``."""
    disposition = classify(exc)
    headers = {"Retry-After": str(max(1, round(disposition.retry_after or 5)))} if disposition.retry else {}
    body: dict[str, Any] = {"error": disposition.code, "message": type(exc).__name__}
    if disposition.details:
        body["errors"] = list(disposition.details)
    return HttpAnswer(disposition.http_status, body, headers)


def http_status_of(event_id: str, services: Services) -> HttpAnswer:
    """``GET /api/unprovision/{eventId}``: 200 with the record, 404 unknown, 400 malformed id."""
    try:
        document = event_status(event_id, services)
    except Exception as exc:  # noqa: BLE001 - classify() decides, unknown errors included (500)
        return error_answer(exc)
    if document is None:
        return HttpAnswer(404, {"error": "not_found", "eventId": event_id})
    return HttpAnswer(200, document)


def http_audit(services: Services, remediate: bool) -> HttpAnswer:
    """``POST /api/audit``: run now, answer the report."""
    try:
        report = run_audit_now(services, remediate)
    except Exception as exc:  # noqa: BLE001 - classify() decides, unknown errors included (500)
        return error_answer(exc)
    return HttpAnswer(200, report.to_json())
