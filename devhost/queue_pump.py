"""Storage-queue pump with the rules of the Storage Queues extension 5.x (docs/azure-behaviour.md §F2).

Per queue function: one polling thread fetches up to ``batchSize`` messages with a 10-minute invisibility and
hands them to a thread pool (at most batchSize + newBatchThreshold in flight). Success deletes the message;
failure releases it with ``visibilityTimeout``, and at ``maxDequeueCount`` the raw body goes to
``<queue>-poison``. Base64 bodies that do not decode are poisoned at once without invoking the function.

Deliberate limits: the 10-minute invisibility is not renewed while a function runs (the host renews it); a
function running longer than that may see its message delivered twice. Polling jitter is ±20 % (the host's
exact randomization is not pinned here).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue import QueueClient, QueueMessage

from devhost.app_index import FunctionInfo, InvocationResult, QueueSpec
from devhost.settings import QueueOptions

log = logging.getLogger("devhost.queue")

RUNNING_INVISIBILITY_S = 600  # messages are fetched invisible for 10 minutes while the function runs
MAX_QUEUE_NAME = 63
STORAGE_API_VERSION = "2025-11-05"  # newest version Azurite 3.35 accepts (docs/azure-behaviour.md §F7)

Invoker = Callable[[FunctionInfo, Any], InvocationResult]
ResultHandler = Callable[[FunctionInfo, InvocationResult], None]
ClientFactory = Callable[[str], QueueClient]


def poison_queue_name(queue_name: str) -> str | None:
    """``<queue>-poison``, or None when the queue is itself a poison queue or the name would be too long."""
    if queue_name.endswith("-poison"):
        return None
    name = f"{queue_name}-poison"
    return name if len(name) <= MAX_QUEUE_NAME else None


def queue_client_factory(connection_string: str) -> ClientFactory:
    """Clients for one account, pinned to an API version Azurite accepts; bodies kept raw (no policy)."""

    def make(queue_name: str) -> QueueClient:
        return QueueClient.from_connection_string(
            connection_string, queue_name, api_version=STORAGE_API_VERSION
        )

    return make


def send_creating(client: QueueClient, text: str) -> None:
    """Send ``text`` as is; create the queue when missing (the host does so for poison queues)."""
    try:
        client.send_message(text)
    except ResourceNotFoundError:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        client.send_message(text)


def decode_body(content: Any, encoding: str) -> bytes:
    """The body the function sees: base64-decoded (host default) or the UTF-8 bytes of the raw text."""
    raw = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
    if encoding == "base64":
        return base64.b64decode(raw, validate=True)
    return raw


class QueuePump:
    """Drives one queue-triggered function; ``start()``/``stop()``; ``notify()`` polls at once."""

    def __init__(
        self,
        info: FunctionInfo,
        clients: ClientFactory,
        options: QueueOptions,
        invoker: Invoker,
        on_result: ResultHandler | None = None,
    ) -> None:
        if not isinstance(info.spec, QueueSpec):
            raise TypeError(f"{info.name} is not a queue-triggered function")
        self.info = info
        self.queue_name = info.spec.queue_name
        self.connection = info.spec.connection
        self.poison_name = poison_queue_name(self.queue_name)
        self._options = options
        self._invoker = invoker
        self._on_result = on_result
        self._queue = clients(self.queue_name)
        self._poison = clients(self.poison_name) if self.poison_name else None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._slots = threading.Semaphore(options.max_in_flight)
        self._pool = ThreadPoolExecutor(options.max_in_flight, thread_name_prefix=f"queue-{info.name}")
        self._thread = threading.Thread(target=self._poll_loop, name=f"poll-{info.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """Poll now (the host does this when one of its own functions wrote to this queue)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling, let running invocations finish, release messages that had not started."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)

    # -- polling -----------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        delay = self._options.min_polling_interval
        while not self._stop.is_set():
            found = self._poll_once()
            if found:
                delay = self._options.min_polling_interval
                continue
            jittered = delay * random.uniform(0.8, 1.2)
            self._wake.wait(min(jittered, self._options.max_polling_interval))
            self._wake.clear()
            delay = min(delay * 2, self._options.max_polling_interval)

    def _free_slots(self) -> int:
        """Block until at least one slot is free; returns how many are free (at most batchSize)."""
        while not self._slots.acquire(timeout=0.2):
            if self._stop.is_set():
                return 0
        free = 1
        while free < self._options.batch_size and self._slots.acquire(blocking=False):
            free += 1
        return free

    def _poll_once(self) -> int:
        free = self._free_slots()
        if not free:
            return 0
        try:
            messages = list(
                self._queue.receive_messages(max_messages=free, visibility_timeout=RUNNING_INVISIBILITY_S)
            )
        except ResourceNotFoundError:
            messages = []  # the host treats a missing queue as an empty one
        except AzureError as exc:
            log.warning("receive from %s failed: %s", self.queue_name, type(exc).__name__)
            messages = []
        for _ in range(free - len(messages)):
            self._slots.release()
        for message in messages:
            self._pool.submit(self._process, message)
        return len(messages)

    # -- one message -------------------------------------------------------------------------------

    def _process(self, message: QueueMessage) -> None:
        try:
            self._handle(message)
        except AzureError as exc:
            log.warning(
                "settling message %s on %s failed: %s", message.id, self.queue_name, type(exc).__name__
            )
        finally:
            self._slots.release()

    def _handle(self, message: QueueMessage) -> None:
        if self._stop.is_set():
            self._queue.update_message(message, visibility_timeout=0)
            return
        if message.dequeue_count and message.dequeue_count > self._options.max_dequeue_count:
            self._to_poison(message, "dequeue count already above maxDequeueCount")
            return
        try:
            body = decode_body(message.content, self._options.message_encoding)
        except (binascii.Error, ValueError):
            self._to_poison(message, "message is not valid base64")
            return
        try:
            result = self._invoker(self.info, self._trigger_value(message, body))
            if self._on_result:
                self._on_result(self.info, result)
        except Exception:
            log.exception(
                "function %s failed on message %s (dequeue count %s)",
                self.info.name,
                message.id,
                message.dequeue_count,
            )
            self._after_failure(message)
            return
        self._queue.delete_message(message)

    @staticmethod
    def _trigger_value(message: QueueMessage, body: bytes) -> FuncQueueMessage:
        return FuncQueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )

    def _after_failure(self, message: QueueMessage) -> None:
        if self._poison is None:
            # no poison queue: leave the message invisible rather than hot-loop (docs/azure-behaviour.md §F2)
            return
        if (message.dequeue_count or 0) >= self._options.max_dequeue_count:
            self._to_poison(message, f"MaxDequeueCount of {self._options.max_dequeue_count} reached")
            return
        self._queue.update_message(message, visibility_timeout=int(self._options.visibility_timeout))

    def _to_poison(self, message: QueueMessage, reason: str) -> None:
        """Copy the raw body to the poison queue (created if missing), then delete the original."""
        if self._poison is None:
            log.warning(
                "message %s on %s cannot be poisoned (%s); left invisible",
                message.id,
                self.queue_name,
                reason,
            )
            return
        send_creating(self._poison, message.content)
        self._queue.delete_message(message)
        log.warning(
            "message %s moved from %s to %s: %s", message.id, self.queue_name, self.poison_name, reason
        )
