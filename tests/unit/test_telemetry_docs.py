"""docs/operations.md's queries use the property names and outcome values the code logs (shared/logfields.py),
and the trigger outcome line (``service.log_outcome``) carries them."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from shared.lifecycle import EventStatus
from shared.logfields import KEYS, OPTIONAL_KEYS, log_fields
from shared.plan import Plan, StepOutcome
from unprovision.outcomes import Answer, Outcome
from unprovision.service import log_outcome

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
KUSTO = "\n".join(re.findall(r"```kusto\n(.*?)```", DOC, flags=re.DOTALL))
# Outcomes logged besides the journal's step outcomes and statuses: retry kinds, a resent batch, audit runs.
EXTRA_OUTCOMES = {"transient", "throttled", "resent", "skipped", "rejected"}
KNOWN_OUTCOMES = ({o.value for o in StepOutcome} | {s.value for s in EventStatus} | {a.value for a in Answer}
                  | EXTRA_OUTCOMES)


def test_queries_read_only_properties_the_code_writes() -> None:
    named = set(re.findall(r"customDimensions\.(\w+)", KUSTO)) | set(re.findall(r'extract\(@"(\w+)=', KUSTO))
    assert named, "no property found in the queries (doc layout changed?)"
    assert named <= set(KEYS) | set(OPTIONAL_KEYS), named - set(KEYS) - set(OPTIONAL_KEYS)
    assert set(KEYS) <= named, "the projection must expose all five properties"


def test_queries_filter_on_outcomes_the_code_logs() -> None:
    used = set()
    for group in re.findall(r"outcome (?:in|!in) \(([^)]*)\)", KUSTO):
        used |= set(re.findall(r'"(\w+)"', group))
    used |= set(re.findall(r'outcome == "(\w+)"', KUSTO))
    assert used
    assert used <= KNOWN_OUTCOMES, used - KNOWN_OUTCOMES


def test_trigger_outcome_line_carries_the_properties(caplog: pytest.LogCaptureFixture) -> None:
    plan = Plan(event_id="evt-7", event_type="lost", target="dev-7")
    with caplog.at_level(logging.INFO):
        log_outcome(logging.getLogger("test.triggers"), "lifecycle message m-1", Outcome("evt-7",
                    EventStatus.FAILED, plan=plan), attempt=2, queue="lifecycle")
    record = caplog.records[-1]
    assert record.levelno == logging.WARNING
    assert record.custom_dimensions == {  # type: ignore[attr-defined]
        "eventId": "evt-7", "target": "dev-7", "step": "event", "outcome": "failed", "attempt": "2",
        "queue": "lifecycle"}
    assert record.getMessage() == ("lifecycle message m-1 eventId=evt-7 target=dev-7 step=event "
                                   "outcome=failed attempt=2 queue=lifecycle")


def test_log_fields_skips_work_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        quiet = logging.getLogger("test.quiet")
        props = log_fields(quiet, logging.INFO, "step", event_id="e", outcome="done")
    assert props == {"eventId": "e", "outcome": "done"}
    assert not caplog.records
