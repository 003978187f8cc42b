"""The audit's triggers, one blueprint: the timer, ``POST /api/audit`` with its status route
``GET /api/audit/{auditId}``, and the audit queue that runs requested audits.

* Timer (``%AUDIT_SCHEDULE%``, hourly): runs the audit under the one-at-a-time lease (remediating when
  ``AUDIT_REMEDIATE`` is true); skipped, with a log line, while another audit holds the lease.
* ``POST /api/audit`` (``?remediate=true|false``, auth FUNCTION): 202 with ``Location`` = the status route;
  409 naming the audit that is queued or running (its status route in ``Location`` too); 400 for an unknown
  or malformed query parameter. An audit takes minutes on throttled hubs, past the front end's 230 s limit,
  so it never runs inside the request.
* ``GET /api/audit/{auditId}``: 200 with the report when done; 202 ``queued``/``running``; 404 unknown.
* Queue ``%AUDIT_QUEUE%`` (``device-lifecycle-audit``): runs the requested audit.

The collaborators come from ``unprovision.wiring.build_audit(services)`` (an
``unprovision.audit.requests.AuditService``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import azure.functions as func

from shared.errors import Rejected
from shared.logfields import log_fields
from unprovision import wiring
from unprovision.audit.requests import (
    COMPLETED,
    UNKNOWN,
    AuditService,
    audit_status,
    request_audit,
    run_exclusive,
    run_requested_audit,
)
from unprovision.audit.run import new_report_id
from unprovision.triggers import json_response, setting_expr

log = logging.getLogger(__name__)
AUDIT_QUERY = frozenset({"remediate", "code"})
_BOOLEANS = {"true": True, "false": False}


def _service() -> AuditService:
    return wiring.build_audit(wiring.services())


def audit_timer(timer: func.TimerRequest) -> None:
    """Runs the audit (remediating when ``AUDIT_REMEDIATE`` is true) and logs its summary."""
    services = wiring.services()
    now = datetime.now(UTC)
    report = run_exclusive(wiring.build_audit(services), new_report_id(now),
                           remediate=services.settings.audit_remediate, now=now)
    summary = json.dumps(report.summary(), sort_keys=True) if report else "skipped: another audit runs"
    # The JSON summary stays right after the colon (docs/operations.md "Audit findings" parses it).
    log_fields(log, logging.INFO, f"audit timer (past due: {timer.past_due}): {summary}", step="audit",
               outcome="completed" if report else "skipped")


def remediate_of(url: str) -> tuple[bool | None, list[dict[str, str]]]:
    """``remediate`` from the query: absent is false; unknown, repeated or non-boolean values are errors."""
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    errors = [{"field": f"query.{n}", "reason": "unknown query parameter"} for n, _ in pairs
              if n not in AUDIT_QUERY]
    values = [v for n, v in pairs if n == "remediate"]
    if len(values) > 1:
        errors.append({"field": "query.remediate", "reason": "given more than once"})
    elif values and values[0] not in _BOOLEANS:
        errors.append({"field": "query.remediate", "reason": "must be exactly true or false"})
    return (None, errors) if errors else (bool(values and _BOOLEANS[values[0]]), [])


def status_location(url: str, audit_id: str) -> str:
    base = url.split("?", 1)[0].rstrip("/")
    return f"{base.removesuffix('/' + audit_id).rstrip('/')}/{quote(audit_id, safe='')}"


def audit_request(req: func.HttpRequest) -> func.HttpResponse:
    remediate, errors = remediate_of(req.url)
    if remediate is None:
        return json_response(400, {"error": "invalid request", "errors": errors})
    answer = request_audit(_service(), remediate=remediate, now=datetime.now(UTC))
    location = {"Location": status_location(req.url, answer.audit_id)}
    if not answer.accepted:
        return json_response(409, {"error": "audit_running", "auditId": answer.audit_id,
                                   "state": answer.state}, location)
    return json_response(202, {"auditId": answer.audit_id, "state": answer.state}, location)


def audit_status_route(req: func.HttpRequest) -> func.HttpResponse:
    audit_id = req.route_params.get("auditId", "")
    try:
        status = audit_status(_service(), audit_id)
    except Rejected as exc:
        return json_response(400, {"error": "invalid request", "errors": [
            {"field": e.field, "reason": e.reason} for e in exc.errors]})
    if status.state == UNKNOWN:
        return json_response(404, {"error": "not_found", "auditId": audit_id})
    body: dict[str, Any] = {"auditId": audit_id, "state": status.state}
    if status.state == COMPLETED:
        return json_response(200, {**body, "report": status.report})
    return json_response(202, body, {"Location": req.url.split("?", 1)[0], "Retry-After": "30"})


def audit_queue(msg: func.QueueMessage) -> None:
    """One requested audit; a malformed message is logged and acknowledged (nothing to run)."""
    try:
        report = run_requested_audit(_service(), msg.get_body(), now=datetime.now(UTC))
    except Rejected as exc:
        log_fields(log, logging.WARNING, f"audit queue message {msg.id} rejected: {exc}", step="audit",
                   outcome="rejected", error=type(exc).__name__)
        return
    done = report.report_id if report else "skipped"
    log_fields(log, logging.INFO, f"audit queue message {msg.id}: {done}", step="audit",
               outcome="completed" if report else "skipped")


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions 1.26
    bp.function_name("audit_timer")(bp.timer_trigger(
        arg_name="timer", schedule=setting_expr("AUDIT_SCHEDULE", "0 0 * * * *"),
        run_on_startup=False)(audit_timer))
    bp.function_name("audit_request")(bp.route(route="audit", methods=["POST"])(audit_request))
    bp.function_name("audit_status")(
        bp.route(route="audit/{auditId}", methods=["GET"])(audit_status_route))
    bp.function_name("audit_queue")(bp.queue_trigger(
        arg_name="msg", queue_name=setting_expr("AUDIT_QUEUE", "device-lifecycle-audit"),
        connection="AzureWebJobsStorage")(audit_queue))
    return bp
