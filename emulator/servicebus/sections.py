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
    """The described value of one encoded section. A binary value is copied out: proton hands it out as a
    memoryview into the ``Data`` object's buffer, which is freed with ``data`` when this function returns."""
    data = Data()
    data.decode(raw)
    data.rewind()
    data.next()
    found = data.get_object()
    if not isinstance(found, Described):
        raise SectionError("a message section must be a described type")
    if isinstance(found.value, memoryview):
        return Described(found.descriptor, bytes(found.value))
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
    """The messages of one transfer: the message itself, or each message of an SDK batch.

    ``ServiceBusMessageBatch`` (and ``send_messages([...])``) travels as one transfer with message format
    0x80013700 whose data sections are each a whole encoded message; the envelope carries at most the first
    message's properties (its message_id) and annotations (emulator/README.md, "Service Bus"). proton does not
    expose a transfer's message format, so a batch is recognised by its shape: no application properties and
    no body other than data sections, every data section a well-formed message of its own
    (:func:`_as_message`), and the envelope's message_id, if any, that of the first one. Anything else is one
    message.
    """
    sections = split(payload)
    body = [s for s in sections if s.code >= DATA and s.code != FOOTER]
    if not body or any(s.code != DATA for s in body) or find(sections, APPLICATION_PROPERTIES):
        return [sections]
    inner: list[list[Section]] = []
    for section in body:
        value = section.value()
        parsed = _as_message(bytes(value)) if isinstance(value, bytes) else None
        if parsed is None:
            return [sections]
        inner.append(parsed)
    envelope_id = properties_field(sections, 0)
    if envelope_id is not None and envelope_id != properties_field(inner[0], 0):
        return [sections]
    return inner


def _as_message(raw: bytes) -> list[Section] | None:
    """``raw`` as message sections when it is a well-formed AMQP message (sections in the standard's order,
    each at most once except body sections, with a body), else None."""
    if len(raw) < 3 or raw[0] != 0x00:
        return None
    try:
        sections = split(raw)
    except SectionError:
        return None
    codes = [s.code for s in sections]
    if any(not HEADER <= c <= FOOTER for c in codes) or codes != sorted(codes):
        return None
    heads = [c for c in codes if c < DATA or c == FOOTER]
    body = [c for c in codes if DATA <= c < FOOTER]
    return sections if body and len(set(heads)) == len(heads) and len(set(body)) == 1 else None


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
