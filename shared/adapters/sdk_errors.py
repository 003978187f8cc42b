"""Translate exceptions of the Azure IoT SDKs into ``shared.errors``, without leaking secrets.

Where the status lives (docs/azure-behaviour.md §3.6, §4.5):

* DPS (provisioningserviceclient 1.2.0): ``ProvisioningServiceError`` whose ``.cause`` is a
  ``ProvisioningServiceErrorDetailsException`` (an msrest ``HttpOperationError``) with
  ``.response.status_code``. Calls made on the generated client directly raise that subclass unwrapped.
* IoT Hub (azure-iot-hub 2.7.0): msrest ``HttpOperationError`` with ``.response`` (body unparsed).
* Both: connection/TLS failures and exhausted 5xx retries surface as msrest ``ClientRequestError``.
* Identity-based hub access: azure-identity raises azure-core ``ClientAuthenticationError``.

Mapping: by HTTP status as every adapter maps it (``http_status``); without a response,
ClientRequestError → Transient and ClientAuthenticationError → AuthFailed.

The message names the operation, the status and the service's error code, plus at most 200 characters
of the service's own message after ``sanitize``: SAS tokens, signatures and keys never reach logs or
the journal. The translated error also carries them as attributes: ``status`` (the HTTP status, None when
no response came back) and ``code`` (the service's error code as text, e.g. ``DeviceNotFound`` or
``404201``; None when the service sent none or no response came back).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import ClientAuthenticationError
from msrest.exceptions import ClientRequestError, HttpOperationError
from provisioningserviceclient import ProvisioningServiceError

from shared.adapters.http_status import error_for_status
from shared.errors import AuthFailed, NotFound, Transient, UnprovisionError
from shared.plan import StepOutcome
from shared.ports import Change

T = TypeVar("T")

#: The SDK exception types this module understands; anything else propagates untouched.
SDK_ERRORS: tuple[type[Exception], ...] = (
    ProvisioningServiceError,
    HttpOperationError,
    ClientRequestError,
    ClientAuthenticationError,
)

_DETAIL_LIMIT = 200
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"SharedAccessSignature\s+[^\s\"',;]+", re.IGNORECASE), "SharedAccessSignature <redacted>"),
    (re.compile(r"\b(sig|skn|se)=[^&\s\"',;]+", re.IGNORECASE), r"\1=<redacted>"),
    (re.compile(r"\b(SharedAccessKey|AccountKey)=[^;\s\"']+", re.IGNORECASE), r"\1=<redacted>"),
    (re.compile(r"(\"?(?:primary|secondary)Key\"?\s*[:=]\s*\"?)[^\"\s,}]+", re.IGNORECASE), r"\1<redacted>"),
    (re.compile(r"\bBearer\s+[A-Za-z0-9\-_.~+/=]+", re.IGNORECASE), "Bearer <redacted>"),
)


def sanitize(text: str) -> str:
    """Remove anything that looks like a SAS token, signature, bearer token or key from ``text``."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def response_of(error: BaseException) -> Any | None:
    """The ``requests.Response`` behind an SDK error, if it has one."""
    if isinstance(error, ProvisioningServiceError):
        cause = getattr(error, "cause", None)
        return getattr(cause, "response", None)
    if isinstance(error, HttpOperationError):
        return getattr(error, "response", None)
    return None


def status_of(error: BaseException) -> int | None:
    response = response_of(error)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    if isinstance(error, ProvisioningServiceError):  # no cause: message is "Service Error <status> - …"
        match = re.match(r"Service Error (\d{3})", str(error))
        if match:
            return int(match.group(1))
    return None


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "null")
    except (ValueError, TypeError):
        return None


def error_code_and_detail(response: Any) -> tuple[str | None, str | None]:
    """The service's error code and message from headers or body (DPS, both hub variants; §3.6, §4.5)."""
    headers = getattr(response, "headers", None) or {}
    code: str | None = headers.get("iothub-errorcode") or headers.get("x-ms-error-code")
    detail: str | None = None
    body = _json(getattr(response, "text", None))
    if isinstance(body, dict):
        if "errorCode" in body:  # DPS ProvisioningServiceErrorDetails, or the newer hub payload
            code = code or str(body["errorCode"])
            detail = body.get("message")
        message = body.get("Message")
        if isinstance(message, str):
            nested = _json(message) if message.lstrip().startswith("{") else None
            if isinstance(nested, dict):
                code = code or (str(nested["errorCode"]) if "errorCode" in nested else None)
                detail = nested.get("message") or detail
            else:
                match = re.match(r"ErrorCode:([A-Za-z0-9]+);?(.*)", message, re.DOTALL)
                if match:
                    code = code or match.group(1)
                    detail = match.group(2) or detail
                else:
                    detail = detail or message
    return code, (str(detail) if detail is not None else None)


def _message(what: str, status: int | None, code: str | None, detail: str | None) -> str:
    parts = [what]
    if status is not None:
        parts.append(f"HTTP {status}")
    if code:
        parts.append(code)
    text = ": ".join([parts[0], " ".join(parts[1:])]) if len(parts) > 1 else parts[0]
    if detail:
        text = f"{text}: {detail.strip()[:_DETAIL_LIMIT]}"
    return sanitize(text)


def translate(error: BaseException, what: str) -> UnprovisionError:
    """The ``shared.errors`` equivalent of an SDK exception; ``what`` names the operation (no secrets)."""
    if isinstance(error, UnprovisionError):
        return error
    if isinstance(error, ClientAuthenticationError):
        return AuthFailed(_message(what, None, "ClientAuthenticationError", "no token for the service"))
    if isinstance(error, ClientRequestError):
        return Transient(_message(what, None, "ClientRequestError", str(error)))
    status = status_of(error)
    response = response_of(error)
    code, detail = error_code_and_detail(response) if response is not None else (None, None)
    message = _message(what, status, code, detail)
    return error_for_status(status, message, code=code, headers=getattr(response, "headers", None))


def guarded(fn: Callable[[], T], what: str) -> T:
    """Call ``fn``; SDK exceptions leave as ``shared.errors``, the original kept as ``__cause__``."""
    try:
        return fn()
    except SDK_ERRORS as error:
        raise translate(error, what) from error


def deleted(delete: Callable[[], object]) -> Change:
    """Run an unconditional (already guarded) delete; ``NotFound`` counts as already done, so that a
    redelivered event does not fail. One place for the before/after words both registries journal."""
    try:
        delete()
    except NotFound:
        return Change(StepOutcome.ALREADY_DONE, before="absent", after="absent")
    return Change(StepOutcome.DONE, before="present", after="absent")
