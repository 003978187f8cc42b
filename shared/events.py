"""The lifecycle-event contract: what an asset tracker or an operator sends to revoke (or restore) a device.

JSON, camelCase. ``parse_event_body`` (raw bytes or text, as any trigger receives them) returns a frozen
``LifecycleEvent`` or raises ``Rejected`` listing EVERY problem (field + reason), never a stack trace.
``parse_event`` validates an already decoded mapping (and hands raw bodies to ``parse_event_body``).

A raw body is checked before anything recurses over it or stores it: at most ``MAX_BODY_UNITS`` UTF-16
code units (how Table storage counts; below the journal's rejected-body limit, so every rejection is kept
whole), strict UTF-8 (a replacement character would let distinct eventIds collide), JSON nesting at most
``MAX_JSON_DEPTH`` (``json.loads`` recurses and a deep body would raise ``RecursionError``), no duplicate keys
and no unpaired surrogates. The eventId must be a safe URL path segment: it is the last segment of the
status URL, so ``.``/``..``, ``/ \\ ? # %`` and control characters are refused.

Unknown fields are rejected: a typo such as ``registrationID`` must not silently become an event without a
target. The JSON Schema in ``schemas/lifecycle-event.schema.json`` is generated from the model:
``python -m shared.events --schema > schemas/lifecycle-event.schema.json``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared import ids
from shared.certs import CertificateError, ParsedCert, parse_pem_chain
from shared.errors import FieldError, Rejected
from shared.ids import (
    DPS_ID_PATTERN,
    EVENT_DEVICE_ID_PATTERN,
    MAX_X509_REGISTRATION_ID_LENGTH,
    group_id_problem,
    hub_device_id_problem,
    normalise_registration_id,
    registration_id_problem,
)


class EventType(StrEnum):
    LOST = "lost"
    STOLEN = "stolen"
    COMPROMISED = "compromised"
    SOLD = "sold"
    MOVED = "moved"
    RETIRED = "retired"
    FOUND = "found"


# UTF-16 code units. Far above any real event (every field but the certificate chain is at most 128
# characters); at most the journal's BODY_LIMIT (240,000), so a rejected body is always kept whole.
MAX_BODY_UNITS = 65_536
MAX_JSON_DEPTH = 32  # an event is depth 1; anything deeper is not an event and must not reach json.loads

REVOCATION_TYPES = frozenset(EventType) - {EventType.FOUND}
GROUP_SCOPE_TYPES = frozenset({EventType.COMPROMISED, EventType.RETIRED})

# What ids.event_id_problem checks, for the published schema (its own validator gives the friendly reason).
_EVENT_ID_SCHEMA: dict[str, JsonValue] = {
    "pattern": f"^{ids.EVENT_ID_PATTERN}$", "not": {"enum": [*sorted(ids.DOT_SEGMENTS)]},
}

# RFC 3339 date-time: a full date, "T" (or space, §5.6 note), time, and a mandatory offset.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]*")
# Field name -> the rule of its ID kind (None when valid): registration and group IDs follow DPS, the
# device ID the hub.
_ID_RULES: dict[str, Callable[[str], str | None]] = {
    "registration_id": registration_id_problem,
    "enrollment_group_id": group_id_problem,
    "device_id": hub_device_id_problem,
}


def _check(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


class LifecycleEvent(BaseModel):
    """One lifecycle event. Registration IDs keep their original spelling; compare with ``target_key``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        str_strip_whitespace=False,
        title="LifecycleEvent",
        json_schema_extra={
            "$id": "urn:unprovision:lifecycle-event",
            "oneOf": [{"required": ["registrationId"]}, {"required": ["enrollmentGroupId"]}],
        },
    )

    event_id: str = Field(
        alias="eventId",
        min_length=1,
        max_length=128,
        description="Idempotency key: the same eventId is applied at most once. A safe URL path segment.",
        json_schema_extra=_EVENT_ID_SCHEMA,
    )
    type: EventType = Field(description="What happened to the device (or group).")
    registration_id: str | None = Field(
        default=None,
        alias="registrationId",
        max_length=128,
        description="DPS registration ID of one device (case-insensitive).",
    )
    enrollment_group_id: str | None = Field(
        default=None,
        alias="enrollmentGroupId",
        max_length=128,
        description="DPS enrollment group: the event concerns the whole group.",
    )
    device_id: str | None = Field(
        default=None,
        alias="deviceId",
        max_length=128,
        description="IoT Hub device ID, when the reporter knows it (case-sensitive).",
    )
    certificate: str | None = Field(
        default=None,
        description="PEM of the device's leaf certificate, optionally followed by its intermediates.",
    )
    occurred_at: datetime = Field(alias="occurredAt", description="RFC 3339 date-time with offset.")
    source: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Who reports: a system name or a person.",
    )
    note: str | None = Field(default=None, max_length=128, description="Becomes the hub's statusReason.")
    force: bool = Field(default=False, description="found: undo a stolen/compromised revocation anyway.")
    delete_group: bool = Field(
        default=False,
        alias="deleteGroup",
        description="retired + enrollmentGroupId: delete the group when that is safe.",
    )
    correlation_id: str | None = Field(
        default=None,
        alias="correlationId",
        max_length=128,
        pattern=r"^[A-Za-z0-9._:@/+=-]+$",
        description="Caller's correlation ID, echoed in outcomes.",
    )

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2025-01-31T12:00:00Z")
        return value

    @field_validator("event_id")
    @classmethod
    def _event_id(cls, value: str) -> str:
        _check(ids.event_id_problem(value))
        return value

    @field_validator(*_ID_RULES)
    @classmethod
    def _id(cls, value: str | None, info: ValidationInfo) -> str | None:
        _check(_ID_RULES[info.field_name](value) if value is not None and info.field_name else None)
        return value

    @field_validator("certificate")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        if value is not None:
            chain = parse_pem_chain(value)  # CertificateError is a ValueError: becomes a field error
            cn = chain[0].common_name
            if cn is None:
                raise CertificateError("leaf certificate has no subject CN (DPS uses it as registration ID)")
            _check(registration_id_problem(cn) and f"leaf CN {cn!r} is not a valid registration ID")
            if len(cn) > MAX_X509_REGISTRATION_ID_LENGTH:
                raise CertificateError("leaf CN is longer than 64 characters")
        return value

    @field_validator("note")
    @classmethod
    def _note(cls, value: str | None) -> str | None:
        if value is not None and not _PRINTABLE.fullmatch(value):
            raise ValueError("must not contain control characters")
        return value

    @model_validator(mode="after")
    def _cross_fields(self) -> LifecycleEvent:
        errors = cross_field_errors(self.model_dump(by_alias=True, exclude_none=True))
        if errors:
            raise ValueError("; ".join(f"{e.field}: {e.reason}" for e in errors))
        return self

    @property
    def is_group(self) -> bool:
        return self.enrollment_group_id is not None

    @property
    def target(self) -> str:
        """The registration ID or group ID named by the event, spelled as sent."""
        return self.enrollment_group_id or self.registration_id or ""

    @property
    def target_key(self) -> str:
        return normalise_registration_id(self.target)

    def certificate_chain(self) -> tuple[ParsedCert, ...]:
        return parse_pem_chain(self.certificate) if self.certificate else ()


def cross_field_errors(raw: Mapping[str, Any]) -> list[FieldError]:
    """Rules that involve several fields, checked on the raw mapping so they are listed with field errors."""
    errors: list[FieldError] = []
    has_reg, has_group = raw.get("registrationId") is not None, raw.get("enrollmentGroupId") is not None
    if has_reg == has_group:
        reason = "give exactly one of registrationId or enrollmentGroupId"
        errors.append(FieldError("registrationId", reason))
    if has_group:
        errors.extend(
            FieldError(name, "only allowed with registrationId")
            for name in ("deviceId", "certificate")
            if raw.get(name) is not None
        )
    if raw.get("deleteGroup") is True and not (has_group and raw.get("type") == EventType.RETIRED.value):
        errors.append(FieldError("deleteGroup", "only allowed with enrollmentGroupId and type retired"))
    if raw.get("force") is True and raw.get("type") != EventType.FOUND.value:
        errors.append(FieldError("force", "only allowed with type found"))
    return errors


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) or "\"\"" for part in loc) if loc else "$"


def _reason(error: Mapping[str, Any], known: tuple[str, ...]) -> str:
    if error["type"] == "extra_forbidden":
        name = str(error["loc"][-1]).lower()
        hint = next((k for k in known if k.lower() == name), None)
        return f"unknown field (did you mean {hint!r}?)" if hint else "unknown field"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


# A JSON string, or an unterminated one up to the end: every match consumes, so scanning stays linear.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _reject(reason: str, field: str = "$") -> Rejected:
    return Rejected([FieldError(field, reason)], "invalid lifecycle event")


def utf16_units(text: str) -> int:
    """Length as Table storage (and .NET) measures a string: UTF-16 code units, two per astral character."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _encodes_as_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decoded_text(body: bytes | str) -> str:
    """The body as text, refusing what cannot be stored or compared faithfully."""
    if isinstance(body, str):
        text = body
        if not _encodes_as_utf8(text):
            raise _reject("not valid Unicode text (unpaired surrogate)")
    elif len(body) > 3 * MAX_BODY_UNITS:  # UTF-8 needs at most 3 bytes per UTF-16 unit
        raise _reject(f"body larger than {MAX_BODY_UNITS} UTF-16 code units")
    else:
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _reject(f"not valid UTF-8 (byte {exc.start})") from None
    if utf16_units(text) > MAX_BODY_UNITS:
        raise _reject(f"body larger than {MAX_BODY_UNITS} UTF-16 code units")
    return text


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether brackets outside JSON strings nest deeper than ``limit``, found without recursion."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return True
    return False


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Two values for one key would let two readers of one body see two different events."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _reject("duplicate key", key)
        seen[key] = value
    return seen


def _unpaired_surrogates(value: Any, field: str) -> list[FieldError]:
    """``\\ud800`` escapes decode to strings no store or UTF-8 encoder accepts."""
    if isinstance(value, str):
        bad = any(0xD800 <= ord(c) <= 0xDFFF for c in value)
        return [FieldError(field, "contains an unpaired surrogate (not valid Unicode)")] if bad else []
    if isinstance(value, dict):
        pairs = value.items()
        return [e for k, v in pairs for e in _unpaired_surrogates(k, field) + _unpaired_surrogates(v, k)]
    if isinstance(value, list):
        return [e for item in value for e in _unpaired_surrogates(item, field)]
    return []


def _decode(body: bytes | str) -> dict[str, Any]:
    text = _decoded_text(body)
    if json_depth_exceeds(text):
        raise _reject(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:
        raise _reject(f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise _reject("must be a JSON object")
    errors = _unpaired_surrogates(raw, "$")
    if errors:
        raise Rejected(errors, "invalid lifecycle event")
    return raw


def parse_event_body(body: bytes | str) -> LifecycleEvent:
    """The one parse of a raw message or request body; raises ``Rejected`` (field + reason) for anything
    that is not a valid event, before anything unbounded (size, nesting) touches the body."""
    return _validate(_decode(body))


def claimed_event_id(body: bytes | str) -> str | None:
    """The eventId a (possibly rejected) body names, when it is a usable one: kept with the rejection so an
    operator can find it. Never raises; shares the bounds of ``parse_event_body``."""
    try:
        raw = _decode(body)
    except Rejected:
        return None
    value = raw.get("eventId")
    if isinstance(value, str) and ids.event_id_problem(value) is None:
        return value
    return None


def parse_event(body: str | bytes | Mapping[str, Any]) -> LifecycleEvent:
    """Validate a decoded mapping (raw bodies go through ``parse_event_body``); raises ``Rejected``."""
    if isinstance(body, str | bytes):
        return parse_event_body(body)
    return _validate(dict(body))


def _validate(raw: dict[str, Any]) -> LifecycleEvent:
    try:
        return LifecycleEvent.model_validate(raw)
    except ValidationError as exc:
        known = tuple(f.alias or name for name, f in LifecycleEvent.model_fields.items())
        errors = [FieldError(_field_name(e["loc"]), _reason(e, known)) for e in exc.errors() if e["loc"]]
        errors.extend(e for e in cross_field_errors(raw) if e not in errors)
        raise Rejected(errors, "invalid lifecycle event") from None


def event_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the contract (draft 2020-12), generated from the model."""
    schema = LifecycleEvent.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    props = schema["properties"]
    props["occurredAt"]["pattern"] = "^" + _RFC3339.pattern + "$"
    for name, pattern in (
        ("registrationId", DPS_ID_PATTERN),
        ("enrollmentGroupId", DPS_ID_PATTERN),
        ("deviceId", EVENT_DEVICE_ID_PATTERN),
    ):
        next(v for v in props[name]["anyOf"] if v.get("type") == "string")["pattern"] = f"^{pattern}$"
    return schema


def schema_text() -> str:
    return json.dumps(event_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.events --schema``: print the JSON Schema (the committed file must equal it)."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--schema"]:
        sys.stderr.write("usage: python -m shared.events --schema\n")
        return 2
    sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
