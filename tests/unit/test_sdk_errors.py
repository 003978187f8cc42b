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

from shared.adapters.http_status import parse_retry_after
from shared.adapters.sdk_errors import deleted, guarded, sanitize, translate
from shared.errors import (
    AuthFailed,
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    Rejected,
    Throttled,
    Transient,
    UnprovisionError,
)
from shared.plan import StepOutcome
from tests.status_table import STATUS_TABLE

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


# ---- status and code carried as attributes ----------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
def test_translated_hub_error_carries_the_http_status_and_error_code(
    status: int, expected: type[Exception]
) -> None:
    err = translate(hub_error(status, "DeviceNotFound"), "hub get device")
    assert type(err) is expected
    assert (err.status, err.code) == (status, "DeviceNotFound")


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
def test_translated_dps_error_carries_the_status_and_the_numeric_error_code(
    status: int, expected: type[Exception]
) -> None:
    err = translate(dps_error(status), "dps get enrollment")
    assert type(err) is expected
    assert (err.status, err.code) == (status, str(status * 1000 + 201))


def test_error_code_header_is_the_code_attribute_when_present() -> None:
    err = translate(hub_error(404, "Other", {"iothub-errorcode": "DeviceNotFound"}), "hub get")
    assert err.code == "DeviceNotFound"


def test_newer_hub_json_payload_gives_the_numeric_code() -> None:
    nested = json.dumps({"errorCode": 412002, "trackingId": "t", "message": "etag mismatch"})
    err = translate(HttpOperationError(None, response(412, {"Message": nested})), "hub update")
    assert isinstance(err, PreconditionFailed)
    assert (err.status, err.code) == (412, "412002")


def test_throttled_carries_status_code_and_retry_after_together() -> None:
    err = translate(hub_error(429, "ThrottlingBacklogTimeout", {"Retry-After": "3"}), "hub bulk")
    assert isinstance(err, Throttled)
    assert (err.status, err.code, err.retry_after) == (429, "ThrottlingBacklogTimeout", 3.0)


def test_dps_error_without_cause_has_the_status_but_no_code() -> None:
    err = translate(ProvisioningServiceError("Service Error 409 - Conflict"), "dps create")
    assert isinstance(err, Conflict)
    assert (err.status, err.code) == (409, None)


def test_response_without_error_code_leaves_code_none() -> None:
    err = translate(HttpOperationError(None, response(503, {"unrelated": 1})), "hub get")
    assert isinstance(err, Transient)
    assert (err.status, err.code) == (503, None)


def test_errors_without_a_response_have_no_status_and_no_code() -> None:
    no_connection = translate(ClientRequestError("Connection refused"), "hub get")
    no_token = translate(ClientAuthenticationError("no credential"), "hub get")
    assert (no_connection.status, no_connection.code) == (None, None)
    assert (no_token.status, no_token.code) == (None, None)


def test_domain_errors_raised_here_default_to_no_status_and_no_code() -> None:
    rejected = Rejected([FieldError("eventId", "missing")])
    transient = Transient("later", retry_after=2.0)
    plain = NotFound("gone")
    for err in (rejected, transient, plain):
        assert (err.status, err.code) == (None, None)
    assert transient.retry_after == 2.0
    assert str(rejected) == "invalid input: eventId: missing"


def test_every_error_class_accepts_status_and_code_as_keywords() -> None:
    rejected = Rejected([FieldError("a", "b")], "bad", status=400, code="InvalidBody")
    throttled = Throttled("slow down", retry_after=1.0, status=429, code="429001")
    missing = NotFound("gone", status=404, code="DeviceNotFound")
    assert (rejected.status, rejected.code, rejected.errors) == (400, "InvalidBody", (FieldError("a", "b"),))
    assert (throttled.status, throttled.code, throttled.retry_after) == (429, "429001", 1.0)
    assert (missing.status, missing.code, str(missing)) == (404, "DeviceNotFound", "gone")


# ---- deleted: the one idempotent-delete rule both registries use ------------------------------------------


def test_deleted_reports_a_real_delete_as_done() -> None:
    calls: list[str] = []
    change = deleted(lambda: calls.append("deleted"))
    assert calls == ["deleted"]
    assert (change.outcome, change.before, change.after) == (StepOutcome.DONE, "present", "absent")


def test_deleted_counts_a_404_from_the_service_as_already_done() -> None:
    def gone() -> None:
        raise hub_error(404, "DeviceNotFound")

    change = deleted(lambda: guarded(gone, "hub delete device"))
    assert (change.outcome, change.before, change.after) == (StepOutcome.ALREADY_DONE, "absent", "absent")


def test_deleted_lets_every_other_failure_through() -> None:
    def refused() -> None:
        raise hub_error(403, "IotHubUnauthorizedAccess")

    with pytest.raises(AuthFailed) as info:
        deleted(lambda: guarded(refused, "hub delete device"))
    assert info.value.status == 403
