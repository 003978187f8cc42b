"""Service Bus trigger and output binding over the unmodified ``azure-servicebus`` SDK
(docs/azure-behaviour.md §F3, §F8).

The host receives in peek-lock with the SDK's receiver, against a real namespace or the emulator's AMQP
stand-in (emulator/README.md, "Service Bus"; the connection string's port and ``SERVICEBUS_CA_BUNDLE`` are
handled by ``shared.adapters.servicebus_connect``), and settles as the Functions host does: complete on
success (``autoCompleteMessages``), abandon when the function raises; the broker dead-letters a message
abandoned ``MaxDeliveryCount`` times with ``MaxDeliveryCountExceeded``. host.json's ``extensions.serviceBus``
``maxConcurrentCalls``, ``prefetchCount``, ``autoCompleteMessages`` and ``maxAutoLockRenewalDuration`` apply
(``devhost.settings.ServiceBusOptions``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.functions.servicebus import ServiceBusMessage as FuncServiceBusMessage

from devhost.app_index import FunctionInfo, InvocationResult, ServiceBusSpec
from devhost.settings import ServiceBusOptions

log = logging.getLogger("devhost.servicebus")

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


class MessageReceiver(Protocol):
    """The subset of a peek-lock receiver the pump needs."""

    def receive(self, max_messages: int, max_wait: float) -> list[BrokerMessage]: ...

    def complete(self, message: BrokerMessage) -> None: ...

    def abandon(self, message: BrokerMessage) -> None: ...


OPEN_WAIT_S = 10.0  # the first receive of an SDK receiver also opens its link


class AzureServiceBusReceiver:
    """Peek-lock receiver via ``azure-servicebus`` (tested against the emulator's Service Bus stand-in)."""

    def __init__(
        self, connection_string: str, entity: str, options: ServiceBusOptions | None = None
    ) -> None:
        from azure.servicebus import AutoLockRenewer

        from shared.adapters.servicebus_connect import client_from_connection_string

        opts = options or ServiceBusOptions()
        self._client = client_from_connection_string(connection_string)
        # maxAutoLockRenewalDuration: the SDK's AutoLockRenewer renews each received message's lock (through
        # the entity's $management node) until it is settled or the duration has passed; 0 turns it off.
        self._renewer = (
            AutoLockRenewer(max_lock_renewal_duration=opts.max_auto_lock_renewal_duration)
            if opts.max_auto_lock_renewal_duration > 0
            else None
        )
        settings: dict[str, Any] = {"prefetch_count": opts.prefetch_count, "auto_lock_renewer": self._renewer}
        topic, _, subscription = entity.partition("/Subscriptions/")
        if subscription:
            self._receiver = self._client.get_subscription_receiver(topic, subscription, **settings)
        else:
            self._receiver = self._client.get_queue_receiver(entity, **settings)
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
        if self._renewer is not None:
            self._renewer.close()
        self._receiver.close()
        self._client.close()


def send_output(connection_string: str, entity: str, items: Iterable[Any], *, topic: bool = False) -> None:
    """The ``serviceBus`` output binding: one message per item (bytes, str, or JSON for anything else), sent
    with the SDK's ``ServiceBusSender`` to a queue or topic."""
    import json

    from azure.servicebus import ServiceBusMessage

    from shared.adapters.servicebus_connect import client_from_connection_string

    messages = [
        ServiceBusMessage(item if isinstance(item, bytes | str) else json.dumps(item)) for item in items
    ]
    with client_from_connection_string(connection_string) as client:
        sender = client.get_topic_sender(entity) if topic else client.get_queue_sender(entity)
        with sender:
            sender.send_messages(messages)


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
        # maxConcurrentCalls bounds the invocations in flight; the function's own autoCompleteMessages
        # attribute, when set, wins over host.json's (docs/azure-behaviour.md §F3).
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
