"""Storage (Tables, Queues) errors in the project's words, retried by the project's one ``Retrier``.

The SDK's own retry policy is switched off for the journal's clients (``retry_total=0``) so that
retrying is explicit and alike for every Azure call: ``with_retry`` translates each failure once
(``raise ... from``) by the shared status table (``http_status``), and ``retry.Retrier`` repeats only what
came out ``Transient`` — connection failures, 408, 429 and 5xx — a few times with short jittered waits, at
least any Retry-After. What is still failing then surfaces as ``Transient``, so that the Functions host
redelivers the message; everything else is never retried.
"""

from __future__ import annotations

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

from shared.adapters.http_status import error_for_status
from shared.errors import AuthFailed, Transient, UnprovisionError
from shared.retry import Retrier, RetryPolicy

T = TypeVar("T")

#: The azure-core errors a storage call raises; anything else (a bug) propagates untouched.
STORAGE_ERRORS: tuple[type[Exception], ...] = (HttpResponseError, ServiceRequestError, ServiceResponseError)

#: Storage answers in milliseconds: up to three retries with waits under 0.05 s, 0.25 s and 1.25 s.
STORAGE_RETRY = RetryPolicy(attempts=4, timeout=30.0, wait_initial=0.05, wait_exp_base=5.0, wait_max=1.25)
_RETRIER = Retrier(STORAGE_RETRY)

# An azure-core error raised without a response still says by its type what the service would have answered.
_STATUS_OF_TYPE: tuple[tuple[type[Exception], int], ...] = (
    (ResourceNotFoundError, 404),
    (ResourceExistsError, 409),
    (ResourceModifiedError, 412),
)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    return next((code for kind, code in _STATUS_OF_TYPE if isinstance(exc, kind)), None)


def translate(exc: BaseException, what: str) -> UnprovisionError:
    """Map an azure-core error to ``shared.errors``; the message names the operation, never credentials."""
    status = _status(exc)
    code = getattr(exc, "error_code", None) or None
    detail = f"{what}: storage answered {status or 'no response'} {code or ''}".rstrip()
    if isinstance(exc, ClientAuthenticationError) and status is None:
        return AuthFailed(detail, code=code)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return Transient(detail)
    response = getattr(exc, "response", None)
    return error_for_status(status, detail, code=code, headers=getattr(response, "headers", None))


def guarded(fn: Callable[[], T], what: str) -> T:
    """Call ``fn``; storage errors leave as ``shared.errors``, the original kept as ``__cause__``."""
    try:
        return fn()
    except STORAGE_ERRORS as exc:
        raise translate(exc, what) from exc


def with_retry(fn: Callable[[], T], what: str, *, retrier: Retrier | None = None) -> T:
    """Run ``fn``; retry what is transient (``STORAGE_RETRY`` unless ``retrier`` says otherwise); every
    failure leaves translated."""
    return (retrier or _RETRIER).call(lambda: guarded(fn, what), name=what)


def stream_pages(pages: Iterator[Iterator[Any]], what: str) -> Iterator[Any]:
    """Yield items page by page, fetched lazily; a failed page fetch is retried with the same continuation."""
    while True:
        page = with_retry(lambda: next(pages, None), what)
        if page is None:
            return
        yield from page
