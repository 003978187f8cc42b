"""Service Bus entities as stored: queues and subscriptions with their messages, and the errors Service Bus
answers with.

A message is kept as the encoded sections its sender wrote (emulator/servicebus/sections.py) plus what the
broker tracks: sequence number, enqueue time, delivery count and, while locked, its lock token and expiry.
Every entity has a ``$DeadLetterQueue`` sub-queue (an :class:`Entity` with ``is_dead_letter``). Entity names
are case-insensitive (emulator/README.md, "Service Bus").
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from emulator.servicebus.sections import Section

DLQ_SUFFIX = "/$deadletterqueue"
SUBSCRIPTIONS = "/subscriptions/"
MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
DEFAULT_LOCK_DURATION = 60.0
DEFAULT_MAX_DELIVERY_COUNT = 10
MAX_MESSAGE_BYTES = 256 * 1024  # Standard tier


class EntityError(Exception):
    """An operation Service Bus refuses; ``condition`` is the AMQP error condition it answers with."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


class LockLost(EntityError):
    def __init__(self, token: uuid.UUID) -> None:
        super().__init__(
            "com.microsoft:message-lock-lost",
            f"The lock supplied is invalid. Either the lock expired, or the message has already been "
            f"removed from the queue. Reference:{token}",
        )


@dataclass
class StoredMessage:
    sections: list[Section]
    sequence_number: int
    enqueued_at: float
    size: int
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    extra_properties: dict[str, Any] | None = None  # added to application properties on delivery

    def copy(self) -> StoredMessage:
        extra = dict(self.extra_properties) if self.extra_properties else None
        return StoredMessage(
            list(self.sections),
            self.sequence_number,
            self.enqueued_at,
            self.size,
            self.delivery_count,
            None,
            0.0,
            extra,
        )


@dataclass
class Entity:
    name: str
    lock_duration: float
    max_delivery_count: int
    is_dead_letter: bool = False
    available: deque[StoredMessage] = field(default_factory=deque)
    locked: dict[uuid.UUID, StoredMessage] = field(default_factory=dict)
    deferred: dict[int, StoredMessage] = field(default_factory=dict)
    completed: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "active": len(self.available) + len(self.locked),
            "locked": len(self.locked),
            "deferred": len(self.deferred),
            "completed": self.completed,
        }


def entity_key(path: str) -> str:
    """Normalised entity path: no scheme/host, no leading slash, lower case (entity names are
    case-insensitive)."""
    text = path.strip()
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[1] if "/" in text.split("://", 1)[1] else ""
    return text.strip("/").lower()
