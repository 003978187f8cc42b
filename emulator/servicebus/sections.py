"""AMQP 1.0 message sections, kept as the sender encoded them.

A stored message is its list of encoded sections. The stand-in re-encodes only what Service Bus itself
changes on the way out (the header's delivery count, the broker's ``x-opt-*`` message annotations, the
dead-letter application properties); properties, application properties and body leave byte for byte as they
came in, so nothing the SDK set can be lost or retyped in a decode/encode round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proton import Data, Described, symbol, timestamp, ubyte, uint, ulong

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
FOOTER = 0x78


class SectionError(ValueError):
    """The transfer is not a well-formed AMQP message."""


@dataclass(frozen=True)
class Section:
    code: int
    raw: bytes

    def value(self) -> Any:
        return decode_one(self.raw).value


def decode_one(raw: bytes) -> Described:
    data = Data()
    data.decode(raw)
    data.rewind()
    data.next()
    found = data.get_object()
    if not isinstance(found, Described):
        raise SectionError("a message section must be a described type")
    return found


def split(payload: bytes) -> list[Section]:
    """The sections of one encoded message, in order."""
    out: list[Section] = []
    offset, data = 0, Data()
    view = bytes(payload)
    while offset < len(view):
        data.clear()
        try:
            used = data.decode(view[offset:])
            data.rewind()
            data.next()
            found = data.get_object()
        except Exception as exc:  # proton raises DataException and friends
            raise SectionError(f"undecodable section at byte {offset}: {exc}") from exc
        if not isinstance(found, Described) or used <= 0:
            raise SectionError(f"section at byte {offset} is not a described type")
        out.append(Section(int(found.descriptor), view[offset : offset + used]))
        offset += used
    if not out:
        raise SectionError("empty message")
    return out


def encode(code: int, value: Any) -> Section:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return Section(code, bytes(data.encode()))


def split_batch(payload: bytes) -> list[list[Section]]:
    """A message is one or more messages: the SDK sends a batch as one transfer whose data sections are each
    an encoded message (message format 0x80013700, which proton does not expose). Two or more data sections
    are read as a batch; a single message comes back as a list of one."""
    sections = split(payload)
    data = [s for s in sections if s.code == DATA]
    if len(data) < 2:
        return [sections]
    return [split(bytes(s.value())) for s in data]


def find(sections: list[Section], code: int) -> Section | None:
    return next((s for s in sections if s.code == code), None)


def annotations(sections: list[Section]) -> dict[Any, Any]:
    found = find(sections, MESSAGE_ANNOTATIONS)
    return dict(found.value() or {}) if found else {}


def app_properties(sections: list[Section]) -> dict[Any, Any]:
    found = find(sections, APPLICATION_PROPERTIES)
    return dict(found.value() or {}) if found else {}


def header_fields(sections: list[Section]) -> list[Any]:
    found = find(sections, HEADER)
    fields = list(found.value() or []) if found else []
    return (fields + [None] * 5)[:5]


def properties_field(sections: list[Section], index: int) -> Any:
    found = find(sections, PROPERTIES)
    fields = list(found.value() or []) if found else []
    return fields[index] if index < len(fields) else None


def rebuild(
    sections: list[Section],
    *,
    delivery_count: int,
    extra_annotations: dict[str, Any],
    extra_app_properties: dict[str, Any] | None = None,
) -> bytes:
    """The message as it leaves the broker: fresh header and annotations, the rest unchanged."""
    durable, priority, ttl, _first, _count = header_fields(sections)
    header = encode(
        HEADER,
        [
            bool(durable),
            ubyte(priority if priority is not None else 4),
            uint(ttl) if ttl is not None else None,
            delivery_count == 0,
            uint(delivery_count),
        ],
    )
    merged = annotations(sections)
    for key, value in extra_annotations.items():
        merged[symbol(key)] = value
    out = [header, encode(MESSAGE_ANNOTATIONS, merged)]
    props = find(sections, PROPERTIES)
    if props is not None:
        out.append(props)
    if extra_app_properties:
        out.append(encode(APPLICATION_PROPERTIES, {**app_properties(sections), **extra_app_properties}))
    elif (app := find(sections, APPLICATION_PROPERTIES)) is not None:
        out.append(app)
    out += [s for s in sections if s.code >= DATA]  # body sections, then the footer
    return b"".join(s.raw for s in out)


def ms_timestamp(seconds: float) -> timestamp:
    return timestamp(int(seconds * 1000))
