"""Service Bus trigger: a receiver protocol, an in-memory FAKE broker, a real receiver, the pump
(docs/azure-behaviour.md §F3, §F8).

No Service Bus broker can run here (docs/azure-behaviour.md §F8: the official emulator is Docker-only), so
tests use ``InMemoryBroker``, a fake with the Service Bus semantics the trigger relies on: peek-lock, delivery
count (1 on the first delivery, as the host reports it), abandon → redelivery, and dead-lettering with reason
``MaxDeliveryCountExceeded`` once a message has been delivered ``max_delivery_count`` (default 10) times. Lock
expiry, sessions, topics fan-out and scheduled messages are not modelled.

``AzureServiceBusReceiver`` wraps ``azure-servicebus`` for a real namespace. It cannot be exercised here (no
broker, no network) and is untested.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.functions.servicebus import ServiceBusMessage as FuncServiceBusMessage

from devhost.app_index import FunctionInfo, InvocationResult, ServiceBusSpec

log = logging.getLogger("devhost.servicebus")

DEFAULT_MAX_DELIVERY_COUNT = 10
MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"

Invoker = Callable[[FunctionInfo, Any], InvocationResult]
ResultHandler = Callable[[FunctionInfo, InvocationResult], None]


@dataclass(frozen=True)
class BrokerMessage:
    """A locked message as a receiver hands it out."""

    body: bytes
    message_id: str
    lock_token: str
    delivery_count: int
    sequence_number: int
    enqueued_time: datetime
    application_properties: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    dead_letter_reason: str | None = None


class MessageReceiver(Protocol):
    """The subset of a peek-lock receiver the pump needs."""

    def receive(self, max_messages: int, max_wait: float) -> list[BrokerMessage]: ...

    def complete(self, message: BrokerMessage) -> None: ...

    def abandon(self, message: BrokerMessage) -> None: ...


class _Entity:
    def __init__(self, max_delivery_count: int) -> None:
        self.max_delivery_count = max_delivery_count
        self.active: deque[BrokerMessage] = deque()
        self.locked: dict[str, BrokerMessage] = {}
        self.dead_letters: list[BrokerMessage] = []
        self.completed: list[BrokerMessage] = []


class InMemoryBroker:
    """FAKE broker (see module docstring). Thread-safe; entities are created on first use."""

    def __init__(self, max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT) -> None:
        self.max_delivery_count = max_delivery_count
        self._entities: dict[str, _Entity] = {}
        self._cond = threading.Condition()
        self._sequence = 0

    def _entity(self, name: str) -> _Entity:
        return self._entities.setdefault(name.lower(), _Entity(self.max_delivery_count))

    def send(self, entity: str, body: bytes | str, **properties: Any) -> str:
        """Enqueue a message; ``properties`` are BrokerMessage fields (message_id, content_type, …)."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        with self._cond:
            self._sequence += 1
            message = BrokerMessage(
                body=data,
                message_id=properties.pop("message_id", None) or uuid.uuid4().hex,
                lock_token="",
                delivery_count=0,
                sequence_number=self._sequence,
                enqueued_time=datetime.now(UTC),
                **properties,
            )
            self._entity(entity).active.append(message)
            self._cond.notify_all()
        return message.message_id

    def receiver(self, entity: str) -> InMemoryReceiver:
        return InMemoryReceiver(self, entity)

    def dead_letters(self, entity: str) -> list[BrokerMessage]:
        with self._cond:
            return list(self._entity(entity).dead_letters)

    def completed(self, entity: str) -> list[BrokerMessage]:
        with self._cond:
            return list(self._entity(entity).completed)

    def active_count(self, entity: str) -> int:
        with self._cond:
            found = self._entity(entity)
            return len(found.active) + len(found.locked)

    def _receive(self, entity: str, max_messages: int, max_wait: float) -> list[BrokerMessage]:
        with self._cond:
            found = self._entity(entity)
            self._cond.wait_for(lambda: bool(found.active), timeout=max_wait)
            taken: list[BrokerMessage] = []
            while found.active and len(taken) < max_messages:
                queued = found.active.popleft()
                locked = replace(
                    queued, lock_token=uuid.uuid4().hex, delivery_count=queued.delivery_count + 1
                )
                found.locked[locked.lock_token] = locked
                taken.append(locked)
            return taken

    def _settle(self, entity: str, message: BrokerMessage, *, complete: bool) -> None:
        with self._cond:
            found = self._entity(entity)
            locked = found.locked.pop(message.lock_token, None)
            if locked is None:
                raise LookupError(f"lock {message.lock_token!r} is not held (already settled?)")
            if complete:
                found.completed.append(locked)
            elif locked.delivery_count >= found.max_delivery_count:
                found.dead_letters.append(
                    replace(locked, lock_token="", dead_letter_reason=MAX_DELIVERY_REASON)
                )
            else:
                found.active.appendleft(replace(locked, lock_token=""))
                self._cond.notify_all()


class InMemoryReceiver:
    """Peek-lock receiver on one entity of an :class:`InMemoryBroker`."""

    def __init__(self, broker: InMemoryBroker, entity: str) -> None:
        self._broker = broker
        self._entity = entity

    def receive(self, max_messages: int, max_wait: float) -> list[BrokerMessage]:
        return self._broker._receive(self._entity, max_messages, max_wait)

    def complete(self, message: BrokerMessage) -> None:
        self._broker._settle(self._entity, message, complete=True)

    def abandon(self, message: BrokerMessage) -> None:
        self._broker._settle(self._entity, message, complete=False)


OPEN_WAIT_S = 10.0  # the first receive of an SDK receiver also opens its link


class AzureServiceBusReceiver:
    """Peek-lock receiver via ``azure-servicebus`` (tested against the emulator's Service Bus stand-in)."""

    def __init__(self, connection_string: str, entity: str) -> None:
        from shared.adapters.servicebus_connect import client_from_connection_string

        self._client = client_from_connection_string(connection_string)
        topic, _, subscription = entity.partition("/Subscriptions/")
        if subscription:
            self._receiver = self._client.get_subscription_receiver(topic, subscription)
        else:
            self._receiver = self._client.get_queue_receiver(entity)
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._opened = False

    def receive(self, max_messages: int, max_wait: float) -> list[BrokerMessage]:
        # The SDK opens the AMQP link within the receive's wait: with the pump's 0.5 s, a loaded machine never
        # finishes TLS + CBS + attach in time and every receive fails ("Timed out waiting for the AMQP link to
        # open"). Until one receive has succeeded, give the link time to open.
        wait = max_wait if self._opened else max(max_wait, OPEN_WAIT_S)
        received = self._receiver.receive_messages(max_message_count=max_messages, max_wait_time=wait)
        self._opened = True
        out = []
        for raw in received:
            token = str(raw.lock_token)
            with self._lock:
                self._pending[token] = raw
            props = {str(k): v for k, v in (raw.application_properties or {}).items()}
            out.append(
                BrokerMessage(
                    body=b"".join(raw.body),
                    message_id=str(raw.message_id),
                    lock_token=token,
                    # The SDK shows the AMQP header (0 on the first delivery); the host reports 1.
                    delivery_count=(raw.delivery_count or 0) + 1,
                    sequence_number=raw.sequence_number or 0,
                    enqueued_time=raw.enqueued_time_utc or datetime.now(UTC),
                    application_properties=props,
                    content_type=raw.content_type,
                    correlation_id=raw.correlation_id,
                    subject=raw.subject,
                )
            )
        return out

    def _take(self, message: BrokerMessage) -> Any:
        with self._lock:
            return self._pending.pop(message.lock_token)

    def complete(self, message: BrokerMessage) -> None:
        self._receiver.complete_message(self._take(message))

    def abandon(self, message: BrokerMessage) -> None:
        self._receiver.abandon_message(self._take(message))

    def close(self) -> None:
        self._receiver.close()
        self._client.close()


def trigger_value(message: BrokerMessage) -> FuncServiceBusMessage:
    """The ``ServiceBusMessage`` the worker passes to the function."""
    return FuncServiceBusMessage(
        body=message.body,
        application_properties=dict(message.application_properties),
        user_properties=dict(message.application_properties),
        message_id=message.message_id,
        delivery_count=message.delivery_count,
        lock_token=message.lock_token,
        sequence_number=message.sequence_number,
        enqueued_time_utc=message.enqueued_time,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        label=message.subject,
        subject=message.subject,
    )


class ServiceBusPump:
    """Receive in peek-lock, invoke, complete on success (autoComplete), abandon when the function raises."""

    def __init__(
        self,
        info: FunctionInfo,
        receiver: MessageReceiver,
        invoker: Invoker,
        *,
        max_concurrent_calls: int = 16,
        auto_complete: bool = True,
        on_result: ResultHandler | None = None,
        max_wait: float = 0.5,
    ) -> None:
        if not isinstance(info.spec, ServiceBusSpec):
            raise TypeError(f"{info.name} is not a Service Bus-triggered function")
        self.info = info
        self.entity = info.spec.entity
        self._receiver = receiver
        self._invoker = invoker
        self._on_result = on_result
        self._auto_complete = (
            info.spec.auto_complete if info.spec.auto_complete is not None else auto_complete
        )
        self._max_wait = max_wait
        self._slots = threading.Semaphore(max_concurrent_calls)
        self._pool = ThreadPoolExecutor(max_concurrent_calls, thread_name_prefix=f"sb-{info.name}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sb-poll-{info.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)
        close = getattr(self._receiver, "close", None)
        if callable(close):
            close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            try:
                messages = self._receiver.receive(1, self._max_wait)
            except Exception:
                log.exception("receive for %s failed", self.info.name)
                messages = []
                self._stop.wait(1.0)
            if not messages:
                self._slots.release()
            for message in messages:
                self._pool.submit(self._process, message)

    def _process(self, message: BrokerMessage) -> None:
        try:
            if self._stop.is_set():
                self._receiver.abandon(message)
                return
            try:
                result = self._invoker(self.info, trigger_value(message))
                if self._on_result:
                    self._on_result(self.info, result)
            except Exception:
                log.exception(
                    "function %s failed on message %s (delivery %d)",
                    self.info.name,
                    message.message_id,
                    message.delivery_count,
                )
                self._receiver.abandon(message)
                return
            if self._auto_complete:
                self._receiver.complete(message)
        except Exception:
            log.exception("settling message %s for %s failed", message.message_id, self.info.name)
        finally:
            self._slots.release()
