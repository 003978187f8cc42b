"""Service Bus entity state: queues, topics with subscriptions, peek-lock, dead-letter sub-queues.

Pure Python, no AMQP: the link handler calls it on the reactor thread; tests and the admin view may read it
from others (one lock guards everything). Semantics follow Service Bus:

* ``delivery_count`` is the AMQP header value: deliveries before this one (0 on the first
  delivery); abandon and
  lock expiry add one, release (a client handing back a message it never processed) does not.
* When an abandon or a lock expiry brings ``delivery_count`` to ``max_delivery_count`` (default 10)
  the message
  moves to ``<entity>/$DeadLetterQueue`` with ``DeadLetterReason=MaxDeliveryCountExceeded``.
* Entities are created on first use; ``X/Subscriptions/Y`` makes ``X`` a topic, and a message sent to a
topic is
  copied to each of its subscriptions (none: dropped, as Service Bus does).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from emulator.servicebus.entities import (
    DEFAULT_LOCK_DURATION,
    DEFAULT_MAX_DELIVERY_COUNT,
    DLQ_SUFFIX,
    MAX_DELIVERY_REASON,
    SUBSCRIPTIONS,
    Entity,
    EntityError,
    LockLost,
    StoredMessage,
    entity_key,
)
from emulator.servicebus.sections import Section


class Broker:
    """All entities of one namespace. ``on_available(key)`` is called (lock held) when an entity gets
    messages."""

    def __init__(
        self,
        *,
        lock_duration: float = DEFAULT_LOCK_DURATION,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count
        self.clock = clock
        self.lock = threading.RLock()
        self.entities: dict[str, Entity] = {}
        self.topics: dict[str, set[str]] = {}
        self._sequence = itertools.count(1)
        self.on_available: Callable[[str], None] = lambda key: None

    # ---- entities -------------------------------------------------------------------------------------
    def entity(self, path: str) -> Entity:
        """The entity at ``path``, created on first use (with its dead-letter queue)."""
        key = entity_key(path)
        if not key or key.count("/") > 3:
            raise EntityError("amqp:not-found", f"The messaging entity '{path}' could not be found.")
        with self.lock:
            found = self.entities.get(key)
            if found is not None:
                return found
            base = key.removesuffix(DLQ_SUFFIX)
            if SUBSCRIPTIONS in base:
                topic = base.split(SUBSCRIPTIONS, 1)[0]
                if topic in self.entities and topic not in self.topics:
                    raise EntityError("amqp:not-allowed", f"'{topic}' is a queue, not a topic.")
                self.topics.setdefault(topic, set()).add(base)
            elif "/" in base:
                raise EntityError("amqp:not-found", f"The messaging entity '{path}' could not be found.")
            if base not in self.entities:
                self.entities[base] = Entity(base, self.lock_duration, self.max_delivery_count)
                dlq = base + DLQ_SUFFIX
                self.entities[dlq] = Entity(dlq, self.lock_duration, 2**31 - 1, is_dead_letter=True)
            return self.entities[key]

    def configure(
        self, path: str, *, lock_duration: float | None = None, max_delivery_count: int | None = None
    ) -> None:
        with self.lock:
            found = self.entity(path)
            if lock_duration is not None:
                found.lock_duration = lock_duration
            if max_delivery_count is not None:
                found.max_delivery_count = max_delivery_count

    def declare_topic(self, topic: str, subscriptions: list[str]) -> None:
        with self.lock:
            self.topics.setdefault(entity_key(topic), set())
            for name in subscriptions:
                self.entity(f"{topic}/Subscriptions/{name}")

    def reset(self) -> None:
        with self.lock:
            self.entities.clear()
            self.topics.clear()

    # ---- send ---------------------------------------------------------------------------------------
    def send(self, path: str, messages: list[tuple[list[Section], int]]) -> None:
        """Enqueue encoded messages (sections, size) to a queue or every subscription of a topic."""
        key = entity_key(path)
        if key.endswith(DLQ_SUFFIX) or SUBSCRIPTIONS in key:
            raise EntityError(
                "amqp:not-allowed", f"Cannot send to '{path}': it is a sub-queue or subscription."
            )
        with self.lock:
            targets = sorted(self.topics[key]) if key in self.topics else [self.entity(key).name]
            now = self.clock()
            for sections, size in messages:
                sequence = next(self._sequence)
                for target in targets:
                    self.entities[target].available.append(StoredMessage(sections, sequence, now, size))
            for target in targets:
                self.on_available(target)

    # ---- receive and settle -------------------------------------------------------------------------
    def lock_next(self, path: str) -> StoredMessage | None:
        """Peek-lock the next available message (a fresh lock token and locked-until)."""
        with self.lock:
            found = self.entity(path)
            if not found.available:
                return None
            message = found.available.popleft()
            message.lock_token = uuid.uuid4()
            message.locked_until = self.clock() + found.lock_duration
            found.locked[message.lock_token] = message
            return message

    def take_next(self, path: str) -> StoredMessage | None:
        """Receive-and-delete."""
        with self.lock:
            found = self.entity(path)
            if not found.available:
                return None
            found.completed += 1
            return found.available.popleft()

    def _held(self, found: Entity, token: uuid.UUID) -> StoredMessage:
        message = found.locked.pop(token, None)
        if message is None:
            raise LockLost(token)
        if message.locked_until <= self.clock():
            self._return(found, message, failed=True)
            raise LockLost(token)
        message.lock_token, message.locked_until = None, 0.0
        return message

    def complete(self, path: str, token: uuid.UUID) -> None:
        with self.lock:
            found = self.entity(path)
            self._held(found, token)
            found.completed += 1

    def abandon(self, path: str, token: uuid.UUID, properties: dict[Any, Any] | None = None) -> None:
        """Back to the front of the entity, delivery count + 1; dead-lettered at the max delivery count."""
        with self.lock:
            found = self.entity(path)
            message = self._held(found, token)
            if properties:
                message.extra_properties = {
                    **(message.extra_properties or {}),
                    **{str(k): v for k, v in properties.items()},
                }
            self._return(found, message, failed=True)

    def release(self, path: str, token: uuid.UUID) -> None:
        """The client gives a message back unprocessed (the SDK releases prefetched messages): no count."""
        with self.lock:
            found = self.entity(path)
            message = found.locked.pop(token, None)
            if message is not None:
                self._return(found, message, failed=False)

    def dead_letter(self, path: str, token: uuid.UUID, reason: str | None, description: str | None) -> None:
        with self.lock:
            found = self.entity(path)
            if found.is_dead_letter:
                raise EntityError(
                    "amqp:not-allowed", "A dead-lettered message cannot be dead-lettered again."
                )
            self._move_to_dlq(found, self._held(found, token), reason, description)

    def defer(self, path: str, token: uuid.UUID) -> None:
        with self.lock:
            found = self.entity(path)
            message = self._held(found, token)
            found.deferred[message.sequence_number] = message

    def renew(self, path: str, token: uuid.UUID) -> float:
        with self.lock:
            found = self.entity(path)
            message = found.locked.get(token)
            if message is None or message.locked_until <= self.clock():
                raise LockLost(token)
            message.locked_until = self.clock() + found.lock_duration
            return message.locked_until

    def expire_locks(self) -> None:
        """Return every message whose lock has run out (delivery count + 1)."""
        with self.lock:
            now = self.clock()
            for found in list(self.entities.values()):
                for token, message in list(found.locked.items()):
                    if message.locked_until <= now:
                        del found.locked[token]
                        self._return(found, message, failed=True)

    def _return(self, found: Entity, message: StoredMessage, *, failed: bool) -> None:
        message.lock_token, message.locked_until = None, 0.0
        if failed:
            message.delivery_count += 1
            if message.delivery_count >= found.max_delivery_count and not found.is_dead_letter:
                self._move_to_dlq(
                    found,
                    message,
                    MAX_DELIVERY_REASON,
                    f"Message could not be consumed after {found.max_delivery_count} delivery attempts.",
                )
                return
        # Back in sequence order (a returned message is older than what arrived since).
        position = next(
            (i for i, m in enumerate(found.available) if m.sequence_number > message.sequence_number),
            len(found.available),
        )
        found.available.insert(position, message)
        self.on_available(found.name)

    def _move_to_dlq(
        self, found: Entity, message: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        dlq = self.entities[found.name + DLQ_SUFFIX]
        moved = message.copy()
        moved.extra_properties = {
            **(message.extra_properties or {}),
            "DeadLetterReason": reason or "",
            "DeadLetterErrorDescription": description or "",
        }
        dlq.available.append(moved)
        self.on_available(dlq.name)

    # ---- views --------------------------------------------------------------------------------------
    def describe(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {name: found.counts() for name, found in sorted(self.entities.items())}
