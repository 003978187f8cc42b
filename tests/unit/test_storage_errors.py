"""Storage errors: translated by the shared status table, retried by the one ``Retrier`` (no sleeping)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import HttpRequest, RequestsTransportResponse

from shared.adapters.storage_errors import STORAGE_RETRY, stream_pages, translate, with_retry
from shared.errors import AuthFailed, Conflict, NotFound, PreconditionFailed, Transient
from shared.retry import Retrier
from tests.status_table import STATUS_TABLE


def http_error(status: int, headers: dict[str, str] | None = None) -> HttpResponseError:
    """An azure-core error over a real transport response, as the Tables and Queues SDKs raise it."""
    raw = requests.Response()
    raw.status_code = status
    raw.reason = "whatever"
    raw._content = b"{}"
    raw.headers.update(headers or {})
    request = HttpRequest("GET", "http://127.0.0.1/t")
    return HttpResponseError(response=RequestsTransportResponse(request, raw))


class Waits:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def quiet_retrier(waits: Waits) -> Retrier:
    return Retrier(STORAGE_RETRY, sleep=waits, rng=random.Random(3))


def failing(errors: list[Exception]) -> tuple[Callable[[], str], list[int]]:
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return "ok"

    return fn, calls


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
def test_statuses_follow_the_shared_status_table(status: int, expected: type[Exception]) -> None:
    assert type(translate(http_error(status), "journal read")) is expected


@pytest.mark.parametrize(("error", "expected"), [
    (ClientAuthenticationError("no token"), AuthFailed),
    (ResourceNotFoundError("gone"), NotFound),
    (ResourceExistsError("there"), Conflict),
    (ServiceRequestError("connection refused"), Transient),
])
def test_typed_sdk_errors_translate_alike(error: Exception, expected: type[Exception]) -> None:
    assert type(translate(error, "journal read")) is expected


def test_the_message_names_the_operation_and_status_only() -> None:
    err = translate(http_error(503), "journal begin")
    assert str(err) == "journal begin: storage answered 503"
    assert err.status == 503


def test_transient_failures_are_retried_then_succeed() -> None:
    waits = Waits()
    fn, calls = failing([http_error(503), ServiceRequestError("reset")])
    assert with_retry(fn, "journal read", retrier=quiet_retrier(waits)) == "ok"
    assert calls[0] == 3
    assert len(waits.seconds) == 2
    assert all(0.0 <= s <= 0.25 for s in waits.seconds)


def test_retries_are_bounded_and_the_last_failure_leaves_translated() -> None:
    waits = Waits()
    fn, calls = failing([http_error(500) for _ in range(10)])
    with pytest.raises(Transient) as info:
        with_retry(fn, "journal read", retrier=quiet_retrier(waits))
    assert calls[0] == STORAGE_RETRY.attempts
    assert isinstance(info.value.__cause__, HttpResponseError)


@pytest.mark.parametrize("error", [http_error(404), http_error(412), http_error(403), KeyError("bug")])
def test_what_cannot_heal_is_tried_once(error: Exception) -> None:
    waits = Waits()
    fn, calls = failing([error])
    with pytest.raises((NotFound, PreconditionFailed, AuthFailed, KeyError)):
        with_retry(fn, "journal claim", retrier=quiet_retrier(waits))
    assert calls[0] == 1
    assert waits.seconds == []


def test_a_retry_after_is_waited_for() -> None:
    waits = Waits()
    fn, _ = failing([http_error(503, {"Retry-After": "2"})])
    with_retry(fn, "journal write", retrier=quiet_retrier(waits))
    assert waits.seconds == [2.0]


def test_a_failed_page_is_fetched_again() -> None:
    pages = iter([iter([1, 2]), iter([3])])
    errors = [ServiceRequestError("reset")]

    class Flaky:
        def __iter__(self) -> Flaky:
            return self

        def __next__(self) -> object:
            if errors:
                raise errors.pop()
            return next(pages)

    assert list(stream_pages(Flaky(), "list events")) == [1, 2, 3]
