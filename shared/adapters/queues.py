"""Storage-queue adapters: the lifecycle queue (``send`` CLI, tests) and the group work queue.

Messages are base64-encoded, the form the Functions host's queue trigger expects by default
(``extensions.queues.messageEncoding = base64``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.errors import Transient

# azure-storage-queue 12.18 sends a service version newer than Azurite 3.35 accepts; this one works on both
# Azurite and Azure (functions-host-behaviour reference, section 7).
QUEUE_API_VERSION = "2025-11-05"


def queue_client(connection_string: str, queue_name: str) -> QueueClient:
    """A queue client that encodes and decodes message bodies as base64 text, like the host."""
    return QueueClient.from_connection_string(
        connection_string,
        queue_name,
        api_version=QUEUE_API_VERSION,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def ensure_queue(client: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


class StorageQueueSender:
    """Sends JSON messages to one Storage queue, creating it on first use."""

    def __init__(self, connection_string: str, queue_name: str) -> None:
        self._client = queue_client(connection_string, queue_name)
        self._created = False
        self.queue_name = queue_name

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_text(json.dumps(message, separators=(",", ":")))

    def send_text(self, body: str) -> None:
        try:
            if not self._created:
                ensure_queue(self._client)
                self._created = True
            self._client.send_message(body)
        except AzureError as exc:
            raise Transient(f"could not send to queue {self.queue_name}: {type(exc).__name__}") from exc


class PoisonQueueReader:
    """Counts and peeks the messages waiting in a ``-poison`` queue (peek does not change them)."""

    def __init__(self, connection_string: str, queue_name: str) -> None:
        self._client = queue_client(connection_string, queue_name)
        self.queue_name = queue_name

    def count(self) -> int:
        try:
            return int(self._client.get_queue_properties().approximate_message_count or 0)
        except AzureError as exc:
            if getattr(exc, "status_code", None) == 404:
                return 0
            raise Transient(f"could not read queue {self.queue_name}: {type(exc).__name__}") from exc

    def peek(self, limit: int = 32) -> list[str]:
        try:
            return [str(m.content) for m in self._client.peek_messages(max_messages=min(limit, 32))]
        except AzureError as exc:
            if getattr(exc, "status_code", None) == 404:
                return []
            raise Transient(f"could not peek queue {self.queue_name}: {type(exc).__name__}") from exc
