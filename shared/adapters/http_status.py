"""An Azure service's HTTP answer in the project's words: the one status table every adapter uses.

Two boundaries read these answers — the IoT SDKs (``sdk_errors``: DPS and IoT Hub over msrest) and
Storage (``storage_errors``: Tables and Queues over azure-core). Each knows where its SDK keeps the status
and the service's error code; what a status *means* is decided here once, so that a 503 or a 429 is retried
alike whichever service sent it (``retry.Retrier`` retries ``Transient`` and its subclasses only):

* 401/403 → ``AuthFailed``; 404 → ``NotFound``; 409 → ``Conflict``; 412 → ``PreconditionFailed``;
* 429 → ``Throttled`` (with its Retry-After); 408 and 5xx → ``Transient`` (with any Retry-After), except
  501 and 505, which say the request can never work there (Azurite answers 501 for what it lacks);
* any other status, or none at all → ``Permanent``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping

from shared.errors import (
    AuthFailed,
    Conflict,
    NotFound,
    Permanent,
    PreconditionFailed,
    Throttled,
    Transient,
    UnprovisionError,
)

_PLAIN_BY_STATUS: dict[int, type[UnprovisionError]] = {
    401: AuthFailed,
    403: AuthFailed,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
}
_NEVER_HEALING_5XX = frozenset({501, 505})


def _may_heal(status: int) -> bool:
    """408 and 5xx (but 501/505): the same request may succeed later."""
    return status == 408 or (status >= 500 and status not in _NEVER_HEALING_5XX)


def error_for_status(
    status: int | None, message: str, *, code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> UnprovisionError:
    """The ``shared.errors`` value of one HTTP answer; ``message`` must already be free of secrets."""
    if status is None:
        return Permanent(message, code=code)
    if status in _PLAIN_BY_STATUS:
        return _PLAIN_BY_STATUS[status](message, status=status, code=code)
    if status == 429:
        return Throttled(message, retry_after=parse_retry_after(headers), status=status, code=code)
    if _may_heal(status):
        return Transient(message, retry_after=parse_retry_after(headers), status=status, code=code)
    return Permanent(message, status=status, code=code)


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait per ``Retry-After`` (seconds or HTTP-date) or ``retry-after-ms``; None if absent.

    ``headers`` should be case-insensitive (both SDKs' response headers are) or canonically spelt.
    """
    if not headers:
        return None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw_ms = headers.get(name)
        if raw_ms:
            try:
                return max(0.0, float(raw_ms) / 1000.0)
            except ValueError:
                pass
    raw = headers.get("Retry-After") or headers.get("retry-after")
    return _seconds_or_date(raw.strip(), now) if raw else None


def _seconds_or_date(raw: str, now: Callable[[], float]) -> float | None:
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())
