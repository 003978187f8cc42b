"""Identifier rules for DPS registration IDs, enrollment group IDs and IoT Hub device IDs.

Every ID that may end up in a URL path or a query passes through here first, so that quotes, spaces, ``;``
or ``/`` never reach a service. Each ``*_problem`` function returns ``None`` for a valid ID and otherwise a
short reason meant for a field error.

Rules (docs/azure-behaviour.md §2): DPS IDs are case-insensitive, alphanumeric plus ``- . _ :``, at most 128
characters. The docs allow a trailing ``-``; the REST spec text forbids a special character at either end. We
follow the docs for the end (a stricter rule could make a real device unrevocable) and require an alphanumeric
first character (both sources agree). X.509 registration IDs equal the certificate CN and so are at most 64
long; that limit is checked where a certificate is involved, not here.

EventIds are free text chosen by the sender, but each is also a URL path segment (see ``event_id_problem``).

IoT Hub device IDs are case-sensitive, 7-bit ASCII alphanumeric plus ``- . % _ * ? ! ( ) , : = @ $ '``.
Deliberate deviation: IDs arriving in events must not contain ``'`` (the hub allows it, but it is the quote
of the hub query language); such a device can still be revoked through its registration ID.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 128
MAX_X509_REGISTRATION_ID_LENGTH = 64

DPS_ID_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9._:-]*[A-Za-z0-9-])?"
EVENT_DEVICE_ID_PATTERN = r"[A-Za-z0-9.%_*?!(),:=@$-]+"
# eventIds: any printable character except those that end, escape or re-encode a URL path segment.
EVENT_ID_PATTERN = r"[^\x00-\x1f\x7f-\x9f/\\?#%]+"
DOT_SEGMENTS = frozenset({".", ".."})
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
_DPS_ID = re.compile(DPS_ID_PATTERN)
_HUB_DEVICE_ID = re.compile(r"[A-Za-z0-9.%_*?!(),:=@$'-]+")
_EVENT_DEVICE_ID = re.compile(EVENT_DEVICE_ID_PATTERN)
_DPS_ALLOWED = (
    "letters, digits and - . _ : (starting with a letter or digit, ending with a letter, digit or -)"
)


def _length_problem(value: str, limit: int = MAX_ID_LENGTH) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > limit:
        return f"must be at most {limit} characters"
    return None


def registration_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid DPS registration ID, or ``None`` when it is."""
    problem = _length_problem(value)
    if problem:
        return problem
    if not _DPS_ID.fullmatch(value):
        return f"may contain only {_DPS_ALLOWED}"
    return None


def group_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid enrollment group ID (same rules as registration IDs,
    docs/azure-behaviour.md §2)."""
    return registration_id_problem(value)


def hub_device_id_problem(value: str, *, allow_quote: bool = False) -> str | None:
    """Why ``value`` is not a valid IoT Hub device ID; ``'`` only with ``allow_quote`` (see module doc)."""
    problem = _length_problem(value)
    if problem:
        return problem
    pattern = _HUB_DEVICE_ID if allow_quote else _EVENT_DEVICE_ID
    if not value.isascii() or not pattern.fullmatch(value):
        allowed = "- . % _ * ? ! ( ) , : = @ $" + (" '" if allow_quote else "")
        return f"may contain only ASCII letters, digits and {allowed}"
    return None


def event_id_problem(value: str) -> str | None:
    """Why ``value`` is not a usable eventId, or ``None``. It becomes the last segment of the status URL
    (``/api/unprovision/{eventId}``), so it must survive as one: a dot segment is normalised away and
    ``/ \\ ? # %`` end or re-encode a segment; control characters have no place in a key or a log line."""
    problem = _length_problem(value)
    if problem:
        return problem
    if value in DOT_SEGMENTS:
        return "must not be . or .. (a URL path segment that clients normalise away)"
    if not _EVENT_ID.fullmatch(value):
        return "must not contain / \\ ? # % or control characters (it is a URL path segment)"
    return None


def normalise_registration_id(value: str) -> str:
    """The comparison key of a DPS ID: DPS treats registration and group IDs case-insensitively."""
    return value.lower()


def same_dps_id(a: str | None, b: str | None) -> bool:
    """True when both are set and name the same DPS registration or group."""
    return a is not None and b is not None and normalise_registration_id(a) == normalise_registration_id(b)
