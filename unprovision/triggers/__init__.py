"""Trigger blueprints of the function app, one ``func.Blueprint`` per module, built by ``blueprint()``.

Blueprints are built by factories (not at import of these modules) so that ``function_app.py`` decides at
its own import which ones to register (the Service Bus one only when its connection setting is present),
and a fresh import of the app gets fresh function builders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import azure.functions as func


def setting_expr(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    """``%NAME%`` when the app setting exists (the host resolves it), else the documented default: an
    unresolvable ``%NAME%`` would stop the host from indexing the function."""
    env = os.environ if environ is None else environ
    return f"%{name}%" if (env.get(name) or "").strip() else default


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2, default=str), status_code=status,
                             headers=dict(headers or {}), mimetype="application/json")


def flag(req: func.HttpRequest, name: str) -> bool:
    """A boolean query parameter: ``true``/``1``/``yes`` (any case) is true, anything else false."""
    return (req.params.get(name) or "").strip().lower() in ("true", "1", "yes")
