"""Build an ``azure.servicebus.ServiceBusClient`` from a connection string — in Azure and on the local
stand-in.

In Azure the connection string is used as is. Two settings exist for the local stand-in (emulator/README.md,
"Service Bus") and change nothing for a real namespace:

* an explicit port in ``Endpoint=sb://HOST:PORT/``: the SDK drops the port when TLS is on and always dials
  5671, so the client is given ``custom_endpoint_address=sb://HOST:PORT`` with ``transport_type=Amqp`` (plain
  AMQP over TLS to that port; without the explicit transport type the SDK would switch to WebSockets);
* ``SERVICEBUS_CA_BUNDLE`` (or ``ca_bundle=``): a PEM file the TLS connection trusts, passed as the SDK's
  ``connection_verify``. Unset → the SDK's default (certifi).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

CA_BUNDLE_SETTING = "SERVICEBUS_CA_BUNDLE"


def endpoint_of(connection_string: str) -> str:
    for part in connection_string.strip().rstrip(";").split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "endpoint":
            return value.strip()
    raise ValueError("the Service Bus connection string has no Endpoint")


def client_kwargs(connection_string: str, *, ca_bundle: str | None = None) -> dict[str, Any]:
    """Extra ``ServiceBusClient.from_connection_string`` keywords for an explicit port and a private CA."""
    from azure.servicebus import TransportType

    kwargs: dict[str, Any] = {}
    parsed = urlparse(endpoint_of(connection_string))
    emulator_flag = "usedevelopmentemulator=true" in connection_string.replace(" ", "").lower()
    if parsed.port and not emulator_flag:
        kwargs["custom_endpoint_address"] = f"sb://{parsed.hostname}:{parsed.port}"
        kwargs["transport_type"] = TransportType.Amqp
    bundle = ca_bundle or os.environ.get(CA_BUNDLE_SETTING)
    if bundle:
        kwargs["connection_verify"] = bundle
    return kwargs


def client_from_connection_string(
    connection_string: str, *, ca_bundle: str | None = None, **kwargs: Any
) -> Any:
    """``ServiceBusClient.from_connection_string`` with :func:`client_kwargs` applied."""
    from azure.servicebus import ServiceBusClient

    options = {**client_kwargs(connection_string, ca_bundle=ca_bundle), **kwargs}
    return ServiceBusClient.from_connection_string(connection_string, **options)


def send_text(connection_string: str, queue: str, text: str, *, message_id: str | None = None) -> None:
    """Send one JSON message to a queue (``unprovision send --servicebus``); Transient when it fails."""
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.exceptions import ServiceBusError

    from shared.errors import Transient

    try:
        with (
            client_from_connection_string(connection_string) as client,
            client.get_queue_sender(queue) as sender,
        ):
            sender.send_messages(
                ServiceBusMessage(text, message_id=message_id, content_type="application/json")
            )
    except ServiceBusError as exc:
        raise Transient(f"could not send to Service Bus queue {queue}: {type(exc).__name__}") from exc


def receive_texts(
    connection_string: str, queue: str, *, max_messages: int = 10, wait: float = 2.0
) -> list[dict[str, Any]]:
    """Receive and complete up to ``max_messages`` (``unprovision outcomes``)."""
    with (
        client_from_connection_string(connection_string) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        out = []
        for message in receiver.receive_messages(max_message_count=max_messages, max_wait_time=wait):
            out.append(
                {
                    "messageId": message.message_id,
                    "correlationId": message.correlation_id,
                    "body": str(message),
                }
            )
            receiver.complete_message(message)
        return out
