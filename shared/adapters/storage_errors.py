"""Storage (Tables) errors in the project's words, and the one small retry loop the journal uses.

The SDK's own retry policy is switched off for the journal's clients (``retry_total=0``) so that
retrying is explicit here: only the errors named in ``is_transient`` are retried, a fixed small number of
times with a short backoff, and then surfaced as ``Transient`` so that the Functions host redelivers the
message. Everything else is translated once (``raise ... from``) and never retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

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

T = TypeVar("T")

RETRY_DELAYS_S: tuple[float, ...] = (0.05, 0.25, 1.0)  # three retries after the first try
_TRANSIENT_STATUS = frozenset({408, 500, 502, 503, 504})


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


def is_transient(exc: BaseException) -> bool:
    """Connection failures, timeouts, 408/429/5xx. Not 4xx: a bad request does not heal by repeating it."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and (_status(exc) in _TRANSIENT_STATUS or _status(exc) == 429)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


def translate(exc: BaseException, what: str) -> UnprovisionError:
    """Map an azure-core error to ``shared.errors``; the message names the operation, never credentials."""
    status = _status(exc)
    code = getattr(exc, "error_code", None) or ""
    detail = f"{what}: storage answered {status or 'no response'} {code}".rstrip()
    result: UnprovisionError
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        result = AuthFailed(detail)
    elif isinstance(exc, ResourceNotFoundError) or status == 404:
        result = NotFound(detail)
    elif isinstance(exc, ResourceExistsError) or status == 409:
        result = Conflict(detail)
    elif isinstance(exc, ResourceModifiedError) or status == 412:
        result = PreconditionFailed(detail)
    elif status == 429:
        result = Throttled(detail, retry_after=_retry_after(exc))
    elif is_transient(exc):
        result = Transient(detail)
    else:
        result = Permanent(detail)
    return result


def with_retry(
    fn: Callable[[], T], what: str, *, delays: tuple[float, ...] = RETRY_DELAYS_S,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``fn``; retry only transient failures, ``len(delays)`` times; translate whatever is left."""
    for attempt in range(len(delays) + 1):
        try:
            return fn()
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            if attempt >= len(delays) or not is_transient(exc):
                raise translate(exc, what) from exc
            sleep(max(delays[attempt], _retry_after(exc) or 0.0))
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


def stream_pages(pages: Iterator[Iterator[Any]], what: str) -> Iterator[Any]:
    """Yield items page by page, fetched lazily; a failed page fetch is retried with the same continuation."""
    while True:
        page = with_retry(lambda: next(pages, None), what)
        if page is None:
            return
        yield from page
