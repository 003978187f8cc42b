"""shared.logfields: the structured log properties operators query in Application Insights."""

from __future__ import annotations

import logging

import pytest

from shared.logfields import KEYS, describe, fields, log_extra


def test_fields_keep_known_values_under_camel_case_names() -> None:
    props = fields(event_id="evt-1", correlation_id=None, target="dev-1", step="HubIdentityDisabled",
                   outcome="done", hub="hub-1.azure-devices.net")
    assert props == {"eventId": "evt-1", "target": "dev-1", "step": "HubIdentityDisabled", "outcome": "done",
                     "hub": "hub-1.azure-devices.net"}
    assert set(KEYS) == {"eventId", "correlationId", "target", "step", "outcome"}


def test_values_cannot_forge_other_fields_and_are_clamped() -> None:
    props = fields(event_id="evt 1 outcome=done\n", target="x" * 500)
    assert props["eventId"] == "evt_1_outcome_done_"
    assert len(props["target"]) == 128
    assert props["target"].endswith("…")
    assert describe(props).count("=") == 2


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log field"):
        fields(event_id="e", connection_string="nope")


def test_describe_orders_the_five_keys_first() -> None:
    props = fields(outcome="failed", hub="h", event_id="e", step="s")
    assert describe(props) == "eventId=e step=s outcome=failed hub=h"


def test_log_extra_puts_properties_on_the_record(caplog: pytest.LogCaptureFixture) -> None:
    props = fields(event_id="evt-9", correlation_id="c-1", target="dev-9", step="EnrollmentDisabled",
                   outcome="done")
    with caplog.at_level(logging.INFO):
        logging.getLogger("test.logfields").info("step %s", describe(props), extra=log_extra(props))
    record = caplog.records[-1]
    assert record.eventId == "evt-9"
    assert record.outcome == "done"
    assert record.custom_dimensions == props  # type: ignore[attr-defined]
    expected = "eventId=evt-9 correlationId=c-1 target=dev-9 step=EnrollmentDisabled outcome=done"
    assert expected in record.getMessage()
