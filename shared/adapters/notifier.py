"""Outcome notifications on Service Bus: tells the reporting system how each event ended.

``ServiceBusOutcomeSender`` sends with the SDK's ``ServiceBusSender``: in Azure from a connection string
or, for
identity-based access, a fully qualified namespace and ``DefaultAzureCredential``; locally against the
emulator's Service Bus stand-in (``shared.adapters.servicebus_connect``: endpoint port,
``SERVICEBUS_CA_BUNDLE``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from shared.errors import Transient


class OutcomeSender(Protocol):
    def send(self, body: str, *, message_id: str, correlation_id: str | None) -> None: ...


class ServiceBusOutcomeSender:
    """Sends one message per outcome to a queue or topic (a topic when ``entity`` starts with ``topic:``)."""

    def __init__(self, connection: str, entity: str, *, fully_qualified_namespace: str | None = None) -> None:
        self._connection = connection
        self._namespace = fully_qualified_namespace
        self._is_topic = entity.startswith("topic:")
        self._entity = entity.removeprefix("topic:").removeprefix("queue:")

    def _client(self) -> Any:
        from azure.servicebus import ServiceBusClient

        if self._namespace:
            from azure.identity import DefaultAzureCredential

            return ServiceBusClient(self._namespace, DefaultAzureCredential())
        from shared.adapters.servicebus_connect import client_from_connection_string

        return client_from_connection_string(self._connection)

    def send(self, body: str, *, message_id: str, correlation_id: str | None) -> None:
        from azure.servicebus import ServiceBusMessage
        from azure.servicebus.exceptions import ServiceBusError

        message = ServiceBusMessage(
            body, message_id=message_id, correlation_id=correlation_id, content_type="application/json"
        )
        try:
            with self._client() as client:
                sender = (
                    client.get_topic_sender(self._entity)
                    if self._is_topic
                    else client.get_queue_sender(self._entity)
                )
                with sender:
                    sender.send_messages(message)
        except ServiceBusError as exc:
            raise Transient(f"could not publish outcome: {type(exc).__name__}") from exc


class OutcomeNotifier:
    """Implements ``shared.ports.Notifier`` over an ``OutcomeSender``.

    The message id is derived from the eventId and final status, so a redelivered event that publishes
    again is de-duplicated by a Service Bus entity with duplicate detection on.
    """

    def __init__(self, sender: OutcomeSender, *, on_error: Callable[[Exception], None] | None = None) -> None:
        self._sender = sender
        self._on_error = on_error

    def publish(self, outcome: Mapping[str, Any]) -> None:
        event_id = str(outcome.get("eventId", ""))
        status = str(outcome.get("status", ""))
        body = json.dumps(outcome, separators=(",", ":"), default=str)
        try:
            self._sender.send(
                body, message_id=f"{event_id}:{status}", correlation_id=outcome.get("correlationId")
            )
        except Transient as exc:
            # The revocation itself has happened and is journaled; a lost notification must not undo or
            # retry it. Report and move on.
            if self._on_error is None:
                raise
            self._on_error(exc)
