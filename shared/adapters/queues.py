"""Storage-queue adapters: the lifecycle queue (``send`` CLI, tests) and the group work queue.

Built from a connection string or an identity-based connection (``AzureWebJobsStorage__accountName`` /
``__queueServiceUri`` + azure-identity; ``storage_connection``, docs/azure-behaviour.md §F10.7).
Messages are base64-encoded, the form the Functions host's queue trigger expects by default
(``extensions.queues.messageEncoding = base64``). Failures leave as ``shared.errors`` after the storage
retries (``storage_errors.with_retry``), like every other storage call.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.adapters import storage_connection
from shared.adapters.settings import Connection
from shared.adapters.storage_errors import with_retry

# azure-storage-queue 12.18 sends a service version newer than Azurite 3.35 accepts; this one works on both
# Azurite and Azure (docs/azure-behaviour.md §F7).
QUEUE_API_VERSION = "2025-11-05"


def queue_client(connection: str | Connection, queue_name: str, *, credential: Any = None) -> QueueClient:
    """A queue client that encodes and decodes message bodies as base64 text, like the host; the SDK's
    own retries are off (``storage_errors.with_retry`` retries). ``connection``: a connection string or a
    resolved ``Connection`` of either form; ``credential`` overrides an identity-based one's (tests)."""
    return storage_connection.queue_client(
        connection,
        queue_name,
        credential=credential,
        api_version=QUEUE_API_VERSION,
        retry_total=0,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def ensure_queue(client: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


class StorageQueueSender:
    """Sends JSON messages to one Storage queue, creating it on first use."""

    def __init__(self, connection: str | Connection, queue_name: str, *, credential: Any = None) -> None:
        self._client = queue_client(connection, queue_name, credential=credential)
        self._created = False
        self.queue_name = queue_name

    def send(self, message: Mapping[str, Any], *, delay: float = 0.0) -> None:
        self.send_text(json.dumps(message, separators=(",", ":")), delay=delay)

    def send_text(self, body: str, *, delay: float = 0.0) -> None:
        # a message's initial invisibility is whole seconds (Put Message's visibilitytimeout)
        invisible = math.ceil(delay) if delay > 0 else None
        with_retry(lambda: self._send(body, invisible), f"send to queue {self.queue_name}")

    def _send(self, body: str, invisible: int | None) -> None:
        if not self._created:
            ensure_queue(self._client)
            self._created = True
        self._client.send_message(body, visibility_timeout=invisible)
