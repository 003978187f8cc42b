"""DPS error codes and the ``ProvisioningServiceErrorDetails`` body (docs/azure-behaviour.md §3.3, §3.6).

Real DPS bodies carry six-digit codes (404201, 404202 seen in the wild, I1) whose meanings are not documented.
The assignment below is the emulator's own and NOT pinned by a documented source: the first three digits are
always the HTTP status, which is what callers should branch on.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from emulator.http import ServiceError

__all__ = ["ServiceError", "bad_request", "error_body", "not_found", "now_utc", "precondition_failed",
           "unauthorized"]

BAD_REQUEST = 400004
API_VERSION_INVALID = 400001
UNAUTHORIZED = 401002
ENROLLMENT_NOT_FOUND = 404201
REGISTRATION_NOT_FOUND = 404202
GROUP_NOT_FOUND = 404203
OPERATION_NOT_FOUND = 404204
CONFLICT = 409201
PRECONDITION_FAILED = 412001


def now_utc() -> str:
    """ISO 8601 UTC with 7-digit fraction, the shape DPS timestamps take on the wire."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def bad_request(message: str) -> ServiceError:
    return ServiceError(400, BAD_REQUEST, message)


def not_found(code: int, message: str) -> ServiceError:
    return ServiceError(404, code, message)


def precondition_failed() -> ServiceError:
    return ServiceError(412, PRECONDITION_FAILED, "Precondition failed: the ETag does not match.")


def unauthorized(message: str = "Unauthorized") -> ServiceError:
    return ServiceError(401, UNAUTHORIZED, message)


def error_body(err: ServiceError) -> dict[str, Any]:
    """The ``ProvisioningServiceErrorDetails`` JSON for an error (``errorCode`` is an int when possible)."""
    code: int | str = err.code
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    return {
        "errorCode": code,
        "trackingId": str(uuid.uuid4()),
        "message": err.message,
        "timestampUtc": now_utc(),
    }
