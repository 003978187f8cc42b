"""The HTTP trigger's own decisions: a strict query, the force route's authority, statuses, the Location."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from unprovision import service
from unprovision.outcomes import Answer, Outcome
from unprovision.triggers import http

BASE = "http://127.0.0.1:7071/api/unprovision"


def post(url: str, params: dict[str, str] | None = None, body: bytes = b"{}") -> func.HttpRequest:
    return func.HttpRequest("POST", url, params=params or {}, body=body)


def refused_fields(response: func.HttpResponse) -> set[str]:
    assert response.status_code == 400, response.get_body()
    document = json.loads(response.get_body())
    assert document["error"] == "invalid request"
    return {e["field"] for e in document["errors"]}


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls that reached the service (none may, for a refused query), answering ``completed``."""
    calls: list[dict[str, Any]] = []

    def handle(body: bytes, services: Any, *, dry_run: bool = False, force_allowed: bool = False) -> Outcome:
        calls.append({"body": body, "dry_run": dry_run, "force_allowed": force_allowed})
        return Outcome("evt-1", "dry_run" if dry_run else "completed")  # type: ignore[arg-type]

    monkeypatch.setattr(service, "handle_event_body", handle)
    monkeypatch.setattr(http.wiring, "services", lambda: None)
    return calls


@pytest.mark.parametrize("query", ["dryrun=true", "DryRun=true", "dry_run=true", "remediate=true"])
def test_misspelt_or_unknown_query_parameters_are_refused_not_ignored(
        query: str, applied: list[dict[str, Any]]) -> None:
    name = query.split("=", maxsplit=1)[0]
    assert refused_fields(http.unprovision(post(f"{BASE}?{query}"))) == {f"query.{name}"}
    assert applied == [], "nothing may be applied on a refused query"


def test_a_case_slip_gets_a_hint() -> None:
    [problem] = http.query_problems([("dryrun", "true")], http.UNPROVISION_QUERY)
    assert "did you mean 'dryRun'" in problem.reason


@pytest.mark.parametrize("value", ["on", "1", "yes", "TRUE", "True", "", "true "])
def test_dry_run_values_other_than_exactly_true_or_false_are_refused(
        value: str, applied: list[dict[str, Any]]) -> None:
    assert refused_fields(http.unprovision(post(BASE, {"dryRun": value}))) == {"query.dryRun"}
    assert applied == []


def test_a_repeated_dry_run_is_refused_although_params_keep_only_one(applied: list[dict[str, Any]]) -> None:
    request = post(f"{BASE}?dryRun=true&dryRun=false", {"dryRun": "false"})
    assert refused_fields(http.unprovision(request)) == {"query.dryRun"}
    assert applied == []


def test_exact_dry_run_values_and_the_key_parameter_are_accepted(applied: list[dict[str, Any]]) -> None:
    assert http.unprovision(post(f"{BASE}?dryRun=true&code=k")).status_code == 200
    assert http.unprovision(post(BASE, {"dryRun": "false"})).status_code == 200
    assert http.unprovision(post(BASE)).status_code == 200
    assert [c["dry_run"] for c in applied] == [True, False, False]


def test_only_the_force_route_passes_the_authority_to_force(applied: list[dict[str, Any]]) -> None:
    http.unprovision(post(BASE))
    http.unprovision_force(post(f"{BASE}/force"))
    assert [c["force_allowed"] for c in applied] == [False, True]


def test_the_force_route_is_registered_at_admin_level_and_the_plain_one_at_function_level() -> None:
    levels = {}
    for function in _app_functions():
        trigger = function.get_trigger()
        if trigger.get_binding_name() == "httpTrigger":
            level = trigger.auth_level
            levels[function.get_function_name()] = str(getattr(level, "value", level) or "function").lower()
    assert levels["unprovision_force"] == "admin"
    assert levels["unprovision"] == "function"


def _app_functions() -> list[Any]:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(http.blueprint())
    return list(app.get_functions())


@pytest.mark.parametrize(
    ("status", "code"),
    [(Answer.CONFLICT, 409), (Answer.FORBIDDEN, 403), ("refused", 409), ("completed", 200)],
)
def test_outcome_statuses_map_to_http(status: str, code: int) -> None:
    assert http.response_status(Outcome("evt-1", status)) == code  # type: ignore[arg-type]


def test_an_event_id_reused_with_another_body_answers_409_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "handle_event_body",
                        lambda *a, **k: Outcome("reuse-1", Answer.CONFLICT, error="eventId taken"))
    answer = http.http_unprovision(b"{}", None, dry_run=False, force_allowed=False,  # type: ignore[arg-type]
                                   status_base=BASE)
    assert (answer.status, answer.body["status"]) == (409, "conflict")


def test_the_location_of_a_202_is_the_status_route_with_the_event_id_percent_encoded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    running = Outcome("a b/c", "in_progress")  # type: ignore[arg-type]
    monkeypatch.setattr(service, "handle_event_body", lambda *a, **k: running)
    monkeypatch.setattr(http.wiring, "services", lambda: None)
    for response in (http.unprovision(post(f"{BASE}/?dryRun=false")),
                     http.unprovision_force(post(f"{BASE}/force?dryRun=false"))):
        assert response.status_code == 202
        assert response.headers["Location"] == f"{BASE}/a%20b%2Fc"


def test_an_unexpected_error_is_answered_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Outcome:
        raise RuntimeError("bug")

    monkeypatch.setattr(service, "handle_event_body", boom)
    answer = http.http_unprovision(b"{}", None, dry_run=False, force_allowed=False,  # type: ignore[arg-type]
                                   status_base=BASE)
    assert (answer.status, answer.body["error"]) == (500, "internal_error")
