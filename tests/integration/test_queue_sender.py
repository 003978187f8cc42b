"""The Storage-queue sender against Azurite: a delayed message stays invisible until its delay has passed."""

from __future__ import annotations

import time
import uuid

from azure.storage.queue import QueueClient

from shared.adapters.queues import StorageQueueSender


def _visible(azurite, name: str) -> list[str]:
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    return [m.content for m in client.peek_messages(max_messages=32)]


def test_a_message_sent_with_a_delay_is_invisible_until_the_delay_has_passed(azurite):
    name = f"q{uuid.uuid4().hex[:10]}"
    sender = StorageQueueSender(azurite.connection_string, name)
    sender.send({"flushHub": "later"}, delay=1.2)  # rounded up to 2 s: the queue counts whole seconds
    sender.send({"flushHub": "now"})
    assert len(_visible(azurite, name)) == 1
    time.sleep(2.5)
    assert len(_visible(azurite, name)) == 2
