"""The lifecycle-event contract: what an asset tracker or an operator sends to revoke (or restore) a device.

JSON, camelCase. ``parse_event`` returns a frozen ``LifecycleEvent`` or raises ``Rejected`` listing EVERY
problem (field + reason), never a stack trace. Unknown fields are rejected: a typo such as
``registrationID`` must not silently become an event without a target. The JSON Schema in
``schemas/lifecycle-event.schema.json`` is generated from the model:
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
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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


REVOCATION_TYPES = frozenset(EventType) - {EventType.FOUND}
GROUP_SCOPE_TYPES = frozenset({EventType.COMPROMISED, EventType.RETIRED})

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
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Idempotency key: the same eventId is applied at most once.",
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


def _decode(body: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(body, Mapping):
        return dict(body)
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected([FieldError("$", f"not valid JSON ({type(exc).__name__})")]) from None
    if not isinstance(raw, dict):
        raise Rejected([FieldError("$", "must be a JSON object")])
    return raw


def parse_event(body: str | bytes | Mapping[str, Any]) -> LifecycleEvent:
    """Validate a message body (JSON text or a decoded mapping); raises ``Rejected`` with all problems."""
    raw = _decode(body)
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
