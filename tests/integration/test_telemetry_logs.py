"""Telemetry an operator can query (docs/operations.md): a revocation run through the production adapters
(emulator + Azurite, connected by connection strings that hold real keys) logs every step and its outcome
with eventId, correlationId, target, step and outcome as record attributes (Application Insights custom
dimensions) and as ``key=value`` pairs in the text, and no log record carries a key, SAS or connection
string, at DEBUG level, SDK loggers included."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.adapters.iothub import HubRegistries
from shared.adapters.journal_tables import TableJournal
from shared.logfields import KEYS
from shared.policy import DEFAULT_POLICY
from tests.integration import engine_fleet as fleet
from tests.soak.checks import find_secrets, secret_values
from unprovision.engine.core import Engine
from unprovision.group.inprocess import GroupWork
from unprovision.outcomes import Answer

pytestmark = pytest.mark.slow

CORRELATION = "ticket-4711"


def _props(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, "custom_dimensions", {}) or {})


def _everything(record: logging.LogRecord) -> str:
    """What any handler could ship: the message, the exception text and every attribute."""
    return f"{record.name} {record.getMessage()} {record.exc_text or ''} {record.__dict__!r}"


def test_a_revocation_logs_each_step_and_outcome_with_the_five_properties_and_no_secret(
        clean_emulator: Any, table_journal: TableJournal, caplog: pytest.LogCaptureFixture) -> None:
    emu = clean_emulator
    fleet.individual_device(emu, "tel-1", hub=0)
    hub = fleet.assigned_hub(emu, "tel-1")
    engine = fleet.engine(emu, table_journal)
    lost = fleet.event("e-tel-1", "lost", reg_id="tel-1", correlationId=CORRELATION)
    with caplog.at_level(logging.DEBUG):
        outcome = engine.apply(lost)
        # the same eventId with another body: refused, and that refusal is logged with the properties too
        conflict = engine.apply(fleet.event("e-tel-1", "stolen", reg_id="tel-1", correlationId=CORRELATION))
    assert outcome.status == "completed", outcome.error
    assert conflict.status == Answer.CONFLICT

    structured = [r for r in caplog.records if _props(r).get("eventId") == "e-tel-1"]
    steps = {p["step"]: p for p in map(_props, structured)}
    for kind in ("EnrollmentDisabled", "HubIdentityDisabled"):
        props = steps[kind]
        assert {k: props[k] for k in KEYS} == {"eventId": "e-tel-1", "correlationId": CORRELATION,
                                               "target": "tel-1", "step": kind, "outcome": "done"}
        assert props["eventType"] == "lost"
    assert steps["HubIdentityDisabled"]["hub"] == hub
    assert steps["event"]["outcome"] == "completed"
    assert steps["accept"]["outcome"] == "conflict"
    for record in structured:
        props = _props(record)
        assert all(getattr(record, key) == value for key, value in props.items())  # top-level attributes
        assert f"eventId=e-tel-1 correlationId={CORRELATION} target=tel-1 step={props['step']}" \
            in record.getMessage()

    secrets = secret_values(emu)
    assert len(caplog.records) > len(structured), "DEBUG capture must include the SDKs' own records"
    leaks = [hit for record in caplog.records for hit in find_secrets(_everything(record), secrets)]
    assert leaks == []


def test_a_failing_step_logs_failed_with_the_error_type_only(
        clean_emulator: Any, table_journal: TableJournal, caplog: pytest.LogCaptureFixture) -> None:
    emu = clean_emulator
    fleet.individual_device(emu, "tel-2", hub=0)
    dps, _ = fleet.engine_ports(emu)
    # No hub configured: DPS is revoked, then the hub step fails permanently (HubNotConfigured).
    registries = HubRegistries({}, retrier=fleet.fast_retrier(1))
    engine = Engine(dps=dps, registries=registries, journal=table_journal, policy=DEFAULT_POLICY,
                    group_work=GroupWork())
    with caplog.at_level(logging.INFO):
        outcome = engine.apply(fleet.event("e-tel-2", "lost", reg_id="tel-2"))
    assert outcome.status == "failed"
    failed = [_props(r) for r in caplog.records if _props(r).get("step") == "HubIdentityDisabled"]
    assert failed
    assert failed[-1]["outcome"] == "failed"
    assert failed[-1]["correlationId"] == "e-tel-2"  # no correlationId sent: the journal's rule, the eventId
    assert failed[-1]["error"] == "HubNotConfigured"
    dps_steps = [p for p in map(_props, caplog.records) if p.get("step") == "EnrollmentDisabled"]
    assert [p["outcome"] for p in dps_steps] == ["done"]
    event = [_props(r) for r in caplog.records if _props(r).get("step") == "event"]
    assert event[-1]["outcome"] == "failed"
    warnings = [r for r in caplog.records if _props(r).get("outcome") == "failed"]
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert find_secrets("\n".join(map(_everything, caplog.records)), secret_values(emu)) == []
