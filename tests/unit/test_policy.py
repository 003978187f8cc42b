"""Policy: the default table and overrides from an app setting (JSON text or mapping)."""

from __future__ import annotations

import pytest

from shared.errors import Rejected
from shared.events import EventType
from shared.policy import DEFAULT_POLICY, EnrollmentAction, HubAction, load_policy


@pytest.mark.parametrize(
    ("event_type", "enrollment", "hub"),
    [
        (EventType.LOST, EnrollmentAction.DISABLE, HubAction.DISABLE),
        (EventType.STOLEN, EnrollmentAction.DISABLE, HubAction.DISABLE),
        (EventType.COMPROMISED, EnrollmentAction.DISABLE, HubAction.DISABLE),
        (EventType.SOLD, EnrollmentAction.DELETE, HubAction.DELETE),
        (EventType.MOVED, EnrollmentAction.DELETE, HubAction.DELETE),
        (EventType.RETIRED, EnrollmentAction.DELETE, HubAction.DELETE),
    ],
)
def test_default_table(event_type, enrollment, hub):
    rule = DEFAULT_POLICY.rule(event_type)
    assert (rule.enrollment, rule.hub) == (enrollment, hub)


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_no_override_gives_the_default(empty):
    assert load_policy(empty) is DEFAULT_POLICY


def test_override_from_json_text_changes_only_named_cells():
    policy = load_policy('{"sold": {"hub": "disable"}, "moved": {"enrollment": "disable", "hub": "none"}}')
    assert policy.rule(EventType.SOLD).hub is HubAction.DISABLE
    assert policy.rule(EventType.SOLD).enrollment is EnrollmentAction.DELETE
    assert policy.rule(EventType.MOVED).hub is HubAction.NONE
    assert policy.rule(EventType.LOST) == DEFAULT_POLICY.rule(EventType.LOST)


def test_override_from_a_mapping():
    assert load_policy({"lost": {"hub": "none"}}).rule(EventType.LOST).hub is HubAction.NONE


def test_every_bad_entry_is_reported():
    with pytest.raises(Rejected) as info:
        load_policy({"sold": {"hub": "explode", "colour": "red"}, "found": {}, "misplaced": {}, "lost": 3})
    assert {e.field for e in info.value.errors} == {
        "policy.sold.hub",
        "policy.sold.colour",
        "policy.found",
        "policy.misplaced",
        "policy.lost",
    }


@pytest.mark.parametrize("text", ["{not json", "[]", "42"])
def test_malformed_override_is_rejected(text):
    with pytest.raises(Rejected) as info:
        load_policy(text)
    assert info.value.errors[0].field == "policy"


def test_policy_round_trips_as_dict():
    assert load_policy(DEFAULT_POLICY.as_dict()) == DEFAULT_POLICY
