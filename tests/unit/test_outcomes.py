"""The one error -> disposition table, HTTP statuses of outcomes, and the outcome's JSON form."""

from __future__ import annotations

import json

import pytest

from shared.errors import (
    AuthFailed,
    Conflict,
    FieldError,
    HubNotConfigured,
    NotFound,
    Permanent,
    PreconditionFailed,
    Rejected,
    Throttled,
    Transient,
)
from shared.plan import Plan, Step, StepKind, plan_to_dict
from shared.ports import EventRecord, StepRecord
from unprovision.outcomes import Outcome, classify, http_status


@pytest.mark.parametrize(
    ("exc", "status", "retry", "http"),
    [
        (Rejected([FieldError("eventId", "required")]), "rejected", False, 400),
        (Transient("timeout"), "in_progress", True, 503),
        (Throttled("429", retry_after=7.0), "in_progress", True, 503),
        (PreconditionFailed("412"), "in_progress", True, 503),
        (AuthFailed("401"), "failed", False, 502),
        (HubNotConfigured("hub-x"), "failed", False, 502),
        (NotFound("gone"), "failed", False, 404),
        (Conflict("exists"), "failed", False, 409),
        (Permanent("no"), "failed", False, 422),
    ],
)
def test_each_error_class_maps_to_one_disposition(
    exc: Exception, status: str, retry: bool, http: int
) -> None:
    disposition = classify(exc)
    assert (disposition.status, disposition.retry, disposition.http_status) == (status, retry, http)


def test_throttled_keeps_its_retry_after_and_rejected_lists_its_field_errors() -> None:
    assert classify(Throttled("429", retry_after=7.0)).retry_after == 7.0
    rejected = classify(Rejected([FieldError("type", "unknown"), FieldError("source", "required")]))
    assert rejected.details == (
        {"field": "type", "reason": "unknown"}, {"field": "source", "reason": "required"})


def test_an_unexpected_exception_is_a_retried_internal_error() -> None:
    disposition = classify(KeyError("bug"))
    assert (disposition.status, disposition.retry, disposition.http_status) == ("failed", True, 500)


@pytest.mark.parametrize(
    ("status", "http"),
    [("completed", 200), ("dry_run", 200), ("in_progress", 202), ("refused", 409), ("rejected", 400),
     ("failed", 422)],
)
def test_outcome_status_maps_to_http(status: str, http: int) -> None:
    assert http_status(Outcome("e-1", status)) == http


def _plan() -> Plan:
    return Plan("e-1", "lost", "dev-1", steps=(
        Step(StepKind.ENROLLMENT_DISABLED, "dev-1", "own enrollment"),
        Step(StepKind.HUB_IDENTITY_DISABLED, "dev-1", "hub second", hub="hub-a.example",
             params={"statusReason": "lost"}),
    ), warnings=("w1",))


def test_outcome_to_dict_is_json_and_leaves_out_empty_fields() -> None:
    step = StepRecord(0, "EnrollmentDisabled", "dev-1", "done", after="disabled")
    outcome = Outcome("e-1", "completed", (step,), ("w1",), _plan())
    data = json.loads(json.dumps(outcome.to_dict()))
    assert data["eventId"] == "e-1"
    assert data["steps"] == [{"index": 0, "kind": "EnrollmentDisabled", "target": "dev-1", "outcome": "done",
                              "after": "disabled"}]
    assert data["plan"]["steps"][1]["hub"] == "hub-a.example"


def test_from_record_keeps_the_latest_attempt_of_each_plan_step_only() -> None:
    record = EventRecord(
        "e-1", "lost", "dev-1", "test", "failed", "c-1", plan=plan_to_dict(_plan()), error="boom",
        steps=(StepRecord(0, "EnrollmentDisabled", "dev-1", "done"),
               StepRecord(1, "HubIdentityDisabled", "dev-1", "failed", error="boom"),
               StepRecord(200_001, "GroupDevicesDisabled", "g", "done")),
    )
    outcome = Outcome.from_record(record)
    assert [s.outcome for s in outcome.steps] == ["done", "failed"]
    assert outcome.warnings == ("w1",)
    assert outcome.plan == _plan()
    assert outcome.error == "boom"
