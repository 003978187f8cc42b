"""The operator HTTP API and its answers (auth level FUNCTION, key in ``x-functions-key`` or ``?code=``).

* ``POST /api/unprovision`` (``?dryRun=true|false``): apply an event; 200 done, 202 group work running
  (Location), 400 field errors or a refused query, 403 ``force`` without the admin key, 409 refused or
  the eventId taken by another body, 422 failed, 502/503 upstream trouble.
* ``POST /api/unprovision/force`` (auth level ADMIN: the master key): the same, and a ``found`` with
  ``force: true`` may lift a ``stolen``/``compromised`` revocation. Forcing undoes the one revocation that
  protects against a thief, so it takes more than the key every integration holds.
* ``GET /api/unprovision/{eventId}``: the journal's record, 404 when unknown.
* The audit routes (``POST /api/audit``, ``GET /api/audit/{auditId}``): ``unprovision.triggers.audit``.
* ``GET /api/openapi.json``: the OpenAPI 3 document (``unprovision/openapi.json``) with the event JSON Schema
  embedded. Anonymous on purpose: it describes the API, holds no data, and clients need it before they have
  a key.

The query of the POST routes is strict: a misspelt ``?dryrun=true`` ignored would apply for real what the
operator meant only to plan, so unknown parameters, repeated ones and values other than ``true``/``false``
are refused with 400 before the body is read. Only this module knows HTTP; ``unprovision.service`` answers
in outcomes and ``unprovision.outcomes.http_status`` maps their statuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import azure.functions as func

from shared.errors import FieldError
from unprovision import service, wiring
from unprovision.outcomes import Outcome, classify, http_status
from unprovision.triggers import json_response

log = logging.getLogger(__name__)

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"
SCHEMA_REF = "../schemas/lifecycle-event.schema.json"
# ``code`` carries the function key; the host checks it, the function only has to tolerate it.
UNPROVISION_QUERY = frozenset({"dryRun", "code"})
_BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True)
class HttpAnswer:
    """What an HTTP route answers: status, JSON body, headers (kept apart from ``func`` for tests)."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def response_status(outcome: Outcome) -> int:
    """The HTTP status for an outcome: the classified one when the entry point decided, else the engine's."""
    decided = outcome.http if isinstance(outcome, service.HandledOutcome) else None
    return decided if decided is not None else http_status(outcome)


def error_answer(exc: BaseException) -> HttpAnswer:
    """An error the caller may retry (503 + Retry-After) or that is not theirs to fix, via ``classify``."""
    disposition = classify(exc)
    headers = {"Retry-After": str(max(1, round(disposition.retry_after or 5)))} if disposition.retry else {}
    body: dict[str, Any] = {"error": disposition.code, "message": type(exc).__name__}
    if disposition.details:
        body["errors"] = list(disposition.details)
    return HttpAnswer(disposition.http_status, body, headers)


def query_problems(pairs: list[tuple[str, str]], allowed: frozenset[str]) -> list[FieldError]:
    """Every parameter outside ``allowed`` or given twice, with a hint when only the case is wrong."""
    problems: list[FieldError] = []
    seen: set[str] = set()
    for name, _ in pairs:
        if name not in allowed:
            hint = next((a for a in sorted(allowed) if a.lower() == name.lower()), None)
            reason = "unknown query parameter" + (f" (did you mean {hint!r}?)" if hint else "")
            problems.append(FieldError(f"query.{name}", reason))
        elif name in seen:
            problems.append(FieldError(f"query.{name}", "given more than once"))
        seen.add(name)
    return problems


def dry_run_of(pairs: list[tuple[str, str]]) -> tuple[bool, list[FieldError]]:
    """``dryRun``: absent means false; otherwise exactly ``true`` or ``false``, nothing else."""
    values = [value for name, value in pairs if name == "dryRun"]
    if not values:
        return False, []
    if values[0] not in _BOOLEANS:
        return False, [FieldError("query.dryRun", "must be exactly true or false")]
    return _BOOLEANS[values[0]], []


def request_query(req: func.HttpRequest) -> list[tuple[str, str]]:
    """The query as sent, repeats included (``req.params`` is a dict and would hide them)."""
    sent = parse_qsl(urlsplit(req.url).query, keep_blank_values=True)
    return sent or [(str(k), str(v)) for k, v in req.params.items()]


def invalid_request(errors: list[FieldError]) -> HttpAnswer:
    return HttpAnswer(400, {"error": "invalid request",
                            "errors": [{"field": e.field, "reason": e.reason} for e in errors]})


def http_unprovision(body: bytes, services: wiring.Services, *, dry_run: bool, force_allowed: bool,
                     status_base: str) -> HttpAnswer:
    """Apply (or plan) one event and answer it: 200 done / dry run, 202 group work running (Location),
    400 rejected (with the rejection's id), otherwise the outcome with its classified status."""
    try:
        outcome = service.handle_event_body(body, services, dry_run=dry_run, force_allowed=force_allowed)
    except Exception as exc:  # noqa: BLE001 - classify() decides, unknown errors included (500)
        return error_answer(exc)
    status = response_status(outcome)
    service.log_outcome(log, f"http event (dry run: {dry_run}, status {status})", outcome)
    if isinstance(outcome, service.HandledOutcome) and outcome.status == "rejected":
        return HttpAnswer(status, {"error": "invalid event", "errors": list(outcome.errors),
                                   "rejectionId": outcome.rejection_id})
    document = outcome.to_dict()
    if isinstance(outcome, service.HandledOutcome):
        document["code"] = outcome.code
    return HttpAnswer(status, document, _location(status, status_base, outcome.event_id))


def _location(status: int, status_base: str, event_id: str) -> dict[str, str]:
    """Where to poll a 202; the eventId is percent-encoded so the URL names it whatever it holds."""
    if status != 202:
        return {}
    return {"Location": f"{status_base.rstrip('/')}/{quote(event_id, safe='')}"}


def http_status_of(event_id: str, services: wiring.Services) -> HttpAnswer:
    """``GET /api/unprovision/{eventId}``: 200 with the record, 404 unknown, 400 malformed id."""
    try:
        document = service.event_status(event_id, services)
    except Exception as exc:  # noqa: BLE001 - classify() decides, unknown errors included (500)
        return error_answer(exc)
    if document is None:
        return HttpAnswer(404, {"error": "not_found", "eventId": event_id})
    return HttpAnswer(200, document)


def _answer(answer: HttpAnswer) -> func.HttpResponse:
    return json_response(answer.status, answer.body, answer.headers)


def _post_event(req: func.HttpRequest, *, force_allowed: bool) -> func.HttpResponse:
    pairs = request_query(req)
    dry_run, value_problems = dry_run_of(pairs)
    problems = query_problems(pairs, UNPROVISION_QUERY) + value_problems
    if problems:
        return _answer(invalid_request(problems))
    status_base = _status_base(req.url, force_allowed=force_allowed)
    return _answer(http_unprovision(req.get_body(), wiring.services(), dry_run=dry_run,
                                    force_allowed=force_allowed, status_base=status_base))


def _status_base(url: str, *, force_allowed: bool) -> str:
    """``…/api/unprovision``: the status route hangs off the plain route, also for the force route."""
    base = url.split("?", 1)[0].rstrip("/")
    return base.removesuffix("/force") if force_allowed else base


def unprovision(req: func.HttpRequest) -> func.HttpResponse:
    return _post_event(req, force_allowed=False)


def unprovision_force(req: func.HttpRequest) -> func.HttpResponse:
    return _post_event(req, force_allowed=True)


def unprovision_status(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(http_status_of(req.route_params.get("eventId", ""), wiring.services()))


def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(200, openapi_document())


@cache
def openapi_document() -> dict[str, Any]:
    """The kept document with the event schema's file reference replaced by the schema itself."""
    document: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    schema_path = (OPENAPI.parent / SCHEMA_REF).resolve()
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    for name, value in schemas.items():
        if value == {"$ref": SCHEMA_REF}:
            schemas[name] = schema
    return document


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions 1.26
    bp.function_name("unprovision")(bp.route(route="unprovision", methods=["POST"])(unprovision))
    bp.function_name("unprovision_force")(bp.route(route="unprovision/force", methods=["POST"],
                                                   auth_level=func.AuthLevel.ADMIN)(unprovision_force))
    bp.function_name("unprovision_status")(
        bp.route(route="unprovision/{eventId}", methods=["GET"])(unprovision_status))
    bp.function_name("openapi")(bp.route(route="openapi.json", methods=["GET"],
                                         auth_level=func.AuthLevel.ANONYMOUS)(openapi))
    return bp
