"""Hypothesis strategies for lifecycle-event bodies: near-valid (one field bent) and plain garbage.

Near-valid bodies start from a valid event and then replace, drop or add one field, so most examples reach
deep validation paths (IDs, dates, cross-field rules) instead of failing at "not JSON".
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

FIELDS = ("eventId", "type", "registrationId", "enrollmentGroupId", "deviceId", "certificate", "occurredAt",
          "source", "note", "force", "deleteGroup", "correlationId")
TYPES = ("lost", "stolen", "compromised", "sold", "moved", "retired", "found")
NASTY_TEXT = ("", " ", "'", "\"", "';--", "a b", "a/b", "a%27b", "x\u02bcy", "\u0430bc", "\x00", "\n",
              "a" * 129, "a" * 300, "-lead", "trail.", "ok-id", "NULL", "null", "\ud7ff", "😀",
              "$where", "{{7*7}}", "${jndi:x}", "..%2f..%2f", "dev\\1")

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=40), st.sampled_from(NASTY_TEXT))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


@st.composite
def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventId": "fz-" + draw(st.text("abcdef0123456789", min_size=8, max_size=16)),
        "type": draw(st.sampled_from(TYPES)),
        "occurredAt": "2026-02-03T04:05:06Z",
        "source": "fuzz",
    }
    if draw(st.booleans()):
        event["registrationId"] = "fz-dev-" + draw(st.text("abcxyz0123", min_size=1, max_size=8))
    else:
        event["enrollmentGroupId"] = "fz-grp-" + draw(st.text("abcxyz0123", min_size=1, max_size=8))
    return event


@st.composite
def near_valid_event(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(valid_event())
    action = draw(st.sampled_from(("replace", "drop", "add", "nasty")))
    name = draw(st.sampled_from(FIELDS))
    if action == "drop":
        event.pop(name, None)
    elif action == "add":
        event[draw(st.sampled_from(("registrationID", "extra", "EventId", "")))] = draw(json_value)
    elif action == "nasty":
        event[name] = draw(st.sampled_from(NASTY_TEXT))
    else:
        event[name] = draw(json_value)
    return event


garbage_body = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    json_value.map(json.dumps),
    st.sampled_from(("", "{", "[]", "null", "1", "\"x\"", "{\"eventId\": ", "\ufeff{}", "{}" * 10)),
)
near_valid_body = near_valid_event().map(json.dumps)
any_body = st.one_of(near_valid_body, garbage_body)
