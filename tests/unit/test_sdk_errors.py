"""SDK exception → shared.errors translation, built from real SDK exception objects and real responses."""

from __future__ import annotations

import json
from email.utils import formatdate

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from msrest.exceptions import ClientRequestError, HttpOperationError
from provisioningserviceclient import ProvisioningServiceError
from provisioningserviceclient.protocol import ProvisioningServiceClient as GeneratedDpsClient
from provisioningserviceclient.protocol.models import ProvisioningServiceErrorDetailsException
from provisioningserviceclient.utils.auth import ConnectionStringAuthentication

from shared.adapters.sdk_errors import guarded, parse_retry_after, sanitize, translate
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

SAS = (
    "SharedAccessSignature sr=localhost%3A8443&sig=AbCdEf%2Bghij%3D&se=1700000000&skn=iothubowner"
)
KEY = "c2VjcmV0LWtleS1ub3QtdG8tbGVhaw=="


def response(
    status: int, body: object | None = None, headers: dict[str, str] | None = None
) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.reason = requests.status_codes._codes.get(status, ("unknown",))[0].replace("_", " ")  # type: ignore[attr-defined]
    r._content = json.dumps(body).encode() if body is not None else b""
    r.encoding = "utf-8"
    r.headers["Content-Type"] = "application/json; charset=utf-8"
    r.headers.update(headers or {})
    return r


def hub_error(
    status: int, code: str = "Whatever", headers: dict[str, str] | None = None
) -> HttpOperationError:
    body = {"Message": f"ErrorCode:{code};something about the device", "ExceptionMessage": "Tracking ID:abc"}
    return HttpOperationError(None, response(status, body, headers))


def dps_error(status: int, headers: dict[str, str] | None = None) -> ProvisioningServiceError:
    client = GeneratedDpsClient(
        ConnectionStringAuthentication.create_with_parsed_values("localhost", "owner", KEY), "https://localhost"
    )
    body = {"errorCode": status * 1000 + 201, "trackingId": "t", "message": "Enrollment not found."}
    cause = ProvisioningServiceErrorDetailsException(client._deserialize, response(status, body, headers))
    return ProvisioningServiceError(f"Service Error {status} - x", cause)


STATUS_TABLE = [
    (401, AuthFailed),
    (403, AuthFailed),
    (404, NotFound),
    (409, Conflict),
    (412, PreconditionFailed),
    (429, Throttled),
    (500, Transient),
    (503, Transient),
    (408, Transient),
    (400, Permanent),
    (413, Permanent),
]


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
def test_hub_statuses_map_to_the_domain_hierarchy(status: int, expected: type[Exception]) -> None:
    err = translate(hub_error(status), "hub get device")
    assert type(err) is expected
    assert f"HTTP {status}" in str(err)


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
def test_dps_statuses_map_via_the_cause_response(status: int, expected: type[Exception]) -> None:
    err = translate(dps_error(status), "dps get enrollment")
    assert type(err) is expected
    assert str(status * 1000 + 201) in str(err)


def test_dps_error_without_cause_uses_the_status_in_its_message() -> None:
    assert isinstance(translate(ProvisioningServiceError("Service Error 404 - Not Found"), "dps"), NotFound)


def test_unwrapped_generated_client_error_is_understood() -> None:
    client = GeneratedDpsClient(
        ConnectionStringAuthentication.create_with_parsed_values("localhost", "owner", KEY), "https://localhost"
    )
    raw = ProvisioningServiceErrorDetailsException(client._deserialize, response(429, {"errorCode": 429001}))
    assert isinstance(translate(raw, "dps query"), Throttled)


def test_client_request_error_is_transient() -> None:
    err = translate(ClientRequestError("Error occurred in request., RetryError: too many 503"), "hub get")
    assert type(err) is Transient


def test_token_failure_is_auth_failed() -> None:
    assert isinstance(translate(ClientAuthenticationError("no credential"), "hub get"), AuthFailed)


def test_throttled_carries_retry_after_seconds() -> None:
    err = translate(hub_error(429, "ThrottlingException", {"Retry-After": "7"}), "hub bulk")
    assert isinstance(err, Throttled)
    assert err.retry_after == 7.0
    assert "ThrottlingException" in str(err)


def test_throttled_without_retry_after_has_none() -> None:
    err = translate(dps_error(429), "dps query")
    assert isinstance(err, Throttled)
    assert err.retry_after is None


def test_retry_after_accepts_http_dates_and_milliseconds() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"Retry-After": formatdate(now + 5, usegmt=True)}, now=lambda: now) == 5.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after(None) is None


def test_hub_error_code_from_header_wins_and_newer_json_message_is_read() -> None:
    nested = json.dumps({"errorCode": 404001, "trackingId": "t", "message": "Device missing"})
    err = translate(HttpOperationError(None, response(404, {"Message": nested})), "hub get")
    assert "404001" in str(err)
    assert "Device missing" in str(err)
    err2 = translate(hub_error(404, "Other", {"iothub-errorcode": "DeviceNotFound"}), "hub get")
    assert "DeviceNotFound" in str(err2)


def test_messages_never_carry_tokens_or_keys() -> None:
    leak = f"token {SAS} key SharedAccessKey={KEY} \"primaryKey\": \"{KEY}\""
    body = {"Message": f"ErrorCode:Unauthorized;{leak}"}
    err = translate(HttpOperationError(None, response(401, body)), "hub get")
    text = str(err)
    assert "AbCdEf" not in text
    assert KEY not in text
    assert isinstance(err, AuthFailed)
    conn = translate(ClientRequestError(f"Connection failed, Authorization: {SAS}"), "dps get")
    assert "AbCdEf" not in str(conn)


def test_sanitize_keeps_harmless_text() -> None:
    assert sanitize("device d1 not found") == "device d1 not found"
    assert "Bearer <redacted>" in sanitize("Authorization: Bearer eyJhbGciOi.abc.def")


def test_guarded_raises_from_the_sdk_error() -> None:
    original = hub_error(404, "DeviceNotFound")

    def fail() -> None:
        raise original

    with pytest.raises(NotFound) as info:
        guarded(fail, "hub get device")
    assert info.value.__cause__ is original


def test_guarded_lets_unrelated_errors_through_untouched() -> None:
    def fail() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        guarded(fail, "x")


def test_translate_returns_domain_errors_unchanged() -> None:
    err: UnprovisionError = NotFound("x")
    assert translate(err, "y") is err
