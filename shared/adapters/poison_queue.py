"""``PoisonQueue`` over a Storage queue (azure-storage-queue 12.18; Azurite locally).

The Functions host moves a queue message that failed ``maxDequeueCount`` times to ``<queue>-poison``
(docs/azure-behaviour.md §F2). The audit only counts and peeks: nothing is dequeued,
hidden or deleted. A poison queue that does not exist yet counts as empty.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from azure.storage.queue import QueueClient

from shared.adapters import storage_connection
from shared.adapters.queues import QUEUE_API_VERSION
from shared.adapters.settings import Connection
from shared.adapters.storage_errors import with_retry
from shared.errors import NotFound
from shared.ports import PoisonMessage

PEEK_LIMIT = 32  # the service's maximum for one peek
BODY_PREVIEW = 200  # characters of each body kept in the report


def poison_queue_name(queue_name: str) -> str:
    """The host's naming rule for the poison queue of ``queue_name``."""
    return f"{queue_name}-poison"


def _text(raw: object) -> str:
    """Bodies are base64 text when written by the host's encoder; show the decoded text when it is."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return text


class StoragePoisonQueue:
    """Read-only view of one poison queue."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    @classmethod
    def from_connection(cls, connection: str | Connection, queue_name: str, *,
                        credential: Any = None) -> StoragePoisonQueue:
        """``queue_name`` is the poison queue itself (see ``poison_queue_name``); ``connection`` is a
        connection string or a resolved ``Connection`` of either form (``storage_connection``)."""
        client = storage_connection.queue_client(  # SDK retries off: with_retry retries
            connection, queue_name, credential=credential, api_version=QUEUE_API_VERSION, retry_total=0
        )
        return cls(client)

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> StoragePoisonQueue:
        return cls.from_connection(connection_string, queue_name)

    @property
    def name(self) -> str:
        return str(self._client.queue_name)

    def count(self) -> int:
        try:
            props = with_retry(self._client.get_queue_properties, f"count {self.name}")
        except NotFound:
            return 0
        return int(props.approximate_message_count or 0)

    def peek(self, n: int = 5) -> Sequence[PoisonMessage]:
        wanted = max(1, min(n, PEEK_LIMIT))
        try:
            what = f"peek {self.name}"
            messages = with_retry(lambda: self._client.peek_messages(max_messages=wanted), what)
        except NotFound:
            return ()
        return tuple(
            PoisonMessage(
                message_id=str(m.id), dequeue_count=int(m.dequeue_count or 0),
                inserted_at=m.inserted_on.isoformat() if m.inserted_on else None,
                body=_text(m.content)[:BODY_PREVIEW],
            )
            for m in messages
        )
