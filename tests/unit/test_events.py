"""The lifecycle-event contract: valid payloads parse, every problem is listed, IDs are strict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.adapters.journal_format import BODY_LIMIT
from shared.errors import Rejected
from shared.events import (
    MAX_BODY_UNITS,
    MAX_JSON_DEPTH,
    EventType,
    claimed_event_id,
    parse_event,
    parse_event_body,
    schema_text,
)
from tests.support.certs import make_ca, make_leaf

PAYLOADS = Path(__file__).parent / "payloads"
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "lifecycle-event.schema.json"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def base(**overrides) -> dict:
    event = {
        "eventId": "evt-1",
        "type": "lost",
        "registrationId": "dev-1",
        "occurredAt": "2025-06-01T09:30:00Z",
        "source": "tracker",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def fields_of(body) -> set[str]:
    with pytest.raises(Rejected) as info:
        parse_event(body)
    return {e.field for e in info.value.errors}


@pytest.mark.parametrize("name", sorted(p.name for p in PAYLOADS.glob("valid-*.json")))
def test_valid_payloads_parse(name):
    event = parse_event((PAYLOADS / name).read_text(encoding="utf-8"))
    assert event.target


def test_registration_id_keeps_spelling_and_compares_lower_case():
    event = parse_event(payload("valid-lost-device.json"))
    assert event.registration_id == "Sensor-A-001"
    assert event.target_key == "sensor-a-001"
    assert event.type is EventType.LOST
    assert event.correlation_id == "corr-42"
    assert not event.is_group


def test_group_event_targets_the_group():
    event = parse_event(payload("valid-retired-group.json"))
    assert event.is_group
    assert event.target == "line-a"
    assert event.delete_group


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "invalid-everything.json",
            {
                "eventId",
                "type",
                "registrationID",
                "registrationId",
                "deviceId",
                "occurredAt",
                "source",
                "note",
                "force",
                "deleteGroup",
            },
        ),
        ("invalid-both-targets.json", {"registrationId"}),
        ("invalid-group-with-device-fields.json", {"deviceId", "certificate", "deleteGroup"}),
        ("invalid-missing-required.json", {"eventId", "type", "occurredAt", "source"}),
    ],
)
def test_every_problem_is_listed_with_its_field(name, expected):
    assert fields_of(payload(name)) == expected


def test_misspelt_field_is_rejected_with_a_hint():
    with pytest.raises(Rejected) as info:
        parse_event(base(registrationId=None, registrationID="dev-1"))
    reasons = {e.field: e.reason for e in info.value.errors}
    assert "did you mean 'registrationId'" in reasons["registrationID"]
    assert "exactly one" in reasons["registrationId"]


@pytest.mark.parametrize("body", ["not json", "[1, 2]", b"\xff\xfe", "42"])
def test_non_object_bodies_are_rejected_without_a_traceback(body):
    assert fields_of(body) == {"$"}


@pytest.mark.parametrize(
    "bad_id",
    [
        "dev'1",
        "dev 1",
        "dev;1",
        "dev/1",
        'dev"1',
        "-dev",
        "dev.",
        "dev_",
        "",
        "x" * 129,
        "dév",
        "dev\n1",
        "a' OR '1'='1",
    ],
)
def test_injection_like_registration_ids_are_rejected(bad_id):
    assert "registrationId" in fields_of(base(registrationId=bad_id))


@pytest.mark.parametrize("bad_id", ["grp'1", "grp 1", "grp;1", "grp/1"])
def test_injection_like_group_ids_are_rejected(bad_id):
    assert "enrollmentGroupId" in fields_of(
        base(registrationId=None, enrollmentGroupId=bad_id, type="retired")
    )


@pytest.mark.parametrize("bad_id", ["dev'1", "dev 1", "dev;1", "dev/1", "dev+1", "dev#1", "dév"])
def test_injection_like_device_ids_are_rejected(bad_id):
    assert fields_of(base(deviceId=bad_id)) == {"deviceId"}


@pytest.mark.parametrize("good_id", ["dev-1", "A.b_c:d-", "x" * 128, "7"])
def test_valid_registration_ids_pass(good_id):
    assert parse_event(base(registrationId=good_id)).registration_id == good_id


@pytest.mark.parametrize("good_id", ["dev(1)", "a=b@c$d", "x%y*z?!,:"])
def test_hub_device_id_punctuation_is_allowed(good_id):
    assert parse_event(base(deviceId=good_id)).device_id == good_id


@pytest.mark.parametrize("when", ["2025-06-01", "2025-06-01T09:30:00", 1717234200, "June 1st"])
def test_occurred_at_must_be_rfc3339_with_offset(when):
    assert fields_of(base(occurredAt=when)) == {"occurredAt"}


def test_certificate_must_be_a_parseable_pem():
    assert fields_of(base(certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")) == {
        "certificate"
    }


def test_certificate_cn_must_be_a_registration_id():
    leaf = make_leaf("bad cn with spaces", make_ca("Root"))
    assert fields_of(base(certificate=leaf.pem)) == {"certificate"}


def test_certificate_chain_is_available_leaf_first():
    root = make_ca("Root")
    leaf = make_leaf("dev-1", root)
    event = parse_event(base(certificate=leaf.pem + root.pem))
    assert [c.common_name for c in event.certificate_chain()] == ["dev-1", "Root"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"deleteGroup": True}, "deleteGroup"),
        (
            {"registrationId": None, "enrollmentGroupId": "g1", "type": "compromised", "deleteGroup": True},
            "deleteGroup",
        ),
        ({"force": True, "type": "stolen"}, "force"),
    ],
)
def test_flags_only_where_meaningful(overrides, field):
    assert fields_of(base(**overrides)) == {field}


def test_event_is_frozen():
    event = parse_event(base())
    with pytest.raises(ValueError, match="frozen"):
        event.note = "changed"


def test_committed_schema_equals_the_generated_one():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "regenerate: python -m shared.events --schema > schemas/lifecycle-event.schema.json"
    )


def test_schema_rejects_unknown_fields_and_requires_a_target():
    schema = json.loads(schema_text())
    assert schema["additionalProperties"] is False
    assert {"eventId", "type", "occurredAt", "source"} <= set(schema["required"])
    assert {"required": ["registrationId"]} in schema["oneOf"]


def rejection_of(body: bytes | str) -> dict[str, str]:
    with pytest.raises(Rejected) as info:
        parse_event_body(body)
    return {e.field: e.reason for e in info.value.errors}


def test_parse_event_body_takes_bytes_and_text():
    text = json.dumps(base())
    assert parse_event_body(text) == parse_event_body(text.encode()) == parse_event(base())


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deeply_nested_json_is_rejected_with_a_field_error_not_a_recursion_error(opening):
    assert "nested deeper than" in rejection_of(opening * 10_000)["$"]


def test_nesting_up_to_the_limit_is_only_a_field_problem():
    deepest = json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1))
    body = json.dumps({**base(), "extra": deepest})
    assert set(rejection_of(body)) == {"extra"}


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert parse_event_body(json.dumps(base(note="[" * 100 + '\\"{'))).note == "[" * 100 + '\\"{'


def test_invalid_utf8_is_rejected_not_replaced():
    body = json.dumps(base(eventId="evt-@")).encode().replace(b"@", b"\xff")  # old code: "evt-\ufffd"
    assert "not valid UTF-8" in rejection_of(body)["$"]


def test_utf16_bodies_are_not_guessed_into_events():
    assert "not valid UTF-8" in rejection_of(json.dumps(base()).encode("utf-16"))["$"]


def test_escaped_unpaired_surrogates_are_rejected():
    assert "surrogate" in rejection_of(json.dumps(base(eventId="evt-\ud800")))["eventId"]


def test_text_with_a_raw_unpaired_surrogate_is_rejected():
    body = json.dumps(base(), ensure_ascii=False).replace("evt-1", "evt-\ud800")
    assert "unpaired surrogate" in rejection_of(body)["$"]


def test_duplicate_keys_are_rejected_so_every_reader_sees_one_event():
    body = json.dumps(base())[:-1] + ', "eventId": "evt-2"}'
    assert rejection_of(body) == {"eventId": "duplicate key"}


def test_body_size_is_counted_in_utf16_units_as_table_storage_does():
    emoji = "\U0001F600"
    body = json.dumps(base(note=emoji * (MAX_BODY_UNITS // 2)), ensure_ascii=False)
    assert len(body) < MAX_BODY_UNITS, "fewer code points than the limit..."
    assert "UTF-16 code units" in rejection_of(body)["$"], "...but more UTF-16 units"
    assert "UTF-16 code units" in rejection_of(body.encode())["$"]


def test_every_body_within_the_size_limit_is_journaled_whole():
    assert MAX_BODY_UNITS <= BODY_LIMIT


@pytest.mark.parametrize(
    "bad_id", [".", "..", "a/b", "..%2F", "a\\b", "a?b", "a#b", "100%", "a\x85b", "a\x00"],
)
def test_event_ids_that_are_not_url_path_segments_are_rejected(bad_id):
    assert set(rejection_of(json.dumps(base(eventId=bad_id)))) == {"eventId"}


@pytest.mark.parametrize("good_id", ["...", "a.b", "evt 1", "évé-1", "a:b@c+d=e", "x" * 128])
def test_event_ids_that_are_path_segments_pass(good_id):
    assert parse_event_body(json.dumps(base(eventId=good_id))).event_id == good_id


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (json.dumps(base(type="nonsense")), "evt-1"),
        (json.dumps(base(eventId="..")), None),
        ("[" * 10_000, None),
        (b'{"eventId": "evt-\xff"}', None),
        ("not json", None),
    ],
)
def test_claimed_event_id_never_raises_and_names_only_usable_ids(body, expected):
    assert claimed_event_id(body) == expected


def test_schema_refuses_event_ids_that_are_not_path_segments():
    event_id = json.loads(schema_text())["properties"]["eventId"]
    assert event_id["not"] == {"enum": [".", ".."]}
    pattern = re.compile(event_id["pattern"])
    assert pattern.match("evt-1")
    assert not any(pattern.match(f"a{c}b") for c in "/\\?#%\x00\x7f")
