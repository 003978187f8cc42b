"""The operator HTTP API (auth level FUNCTION, key in ``x-functions-key`` or ``?code=``).

* ``POST /api/unprovision`` (``?dryRun=true``): apply an event; 200 done, 202 group work running (Location),
  400 field errors, 409 refused, 422 failed, 502/503 upstream trouble (``service.http_unprovision``).
* ``GET /api/unprovision/{eventId}``: the journal's record, 404 when unknown.
* ``POST /api/audit`` (``?remediate=true``): run the audit now.
* ``GET /api/openapi.json``: the OpenAPI 3 document (``unprovision/openapi.json``) with the event JSON Schema
  embedded. Anonymous on purpose: it describes the API, holds no data, and clients need it before they have
  a key.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import azure.functions as func

from unprovision import service, wiring
from unprovision.triggers import flag, json_response

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"
SCHEMA_REF = "../schemas/lifecycle-event.schema.json"


def _answer(answer: service.HttpAnswer) -> func.HttpResponse:
    return json_response(answer.status, answer.body, answer.headers)


def unprovision(req: func.HttpRequest) -> func.HttpResponse:
    base = req.url.split("?", 1)[0]
    return _answer(service.http_unprovision(req.get_body(), wiring.services(),
                                            dry_run=flag(req, "dryRun"), status_base=base))


def unprovision_status(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(service.http_status_of(req.route_params.get("eventId", ""), wiring.services()))


def audit_now(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(service.http_audit(wiring.services(), flag(req, "remediate")))


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
    bp.function_name("unprovision_status")(
        bp.route(route="unprovision/{eventId}", methods=["GET"])(unprovision_status))
    bp.function_name("audit_now")(bp.route(route="audit", methods=["POST"])(audit_now))
    bp.function_name("openapi")(bp.route(route="openapi.json", methods=["GET"],
                                         auth_level=func.AuthLevel.ANONYMOUS)(openapi))
    return bp
