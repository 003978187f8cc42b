"""Sending messages to the lifecycle queue, and waiting until every one of them has settled.

"Settled" means: a completed/refused/failed journal record for the eventId, a rejection record naming it, or
its body in the poison queue. An event still ``received``/``in_progress`` is not settled.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from tests.soak.checks import JournalRows, journal_rows
from tests.soak.soakfleet import Expected

TERMINAL = {"completed", "refused", "failed", "rejected"}


def queue(connection_string: str, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(connection_string, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def send_all(client: QueueClient, messages: Sequence[Expected]) -> int:
    """Base64 like the host's default encoding; ``garbage`` bodies go as raw text (undecodable)."""
    for exp in messages:
        body = exp.body if exp.kind == "garbage" else base64.b64encode(exp.body.encode()).decode()
        client.send_message(body)
    return len(messages)


def drain_bodies(client: QueueClient) -> list[str]:
    """Every body in a queue (test-owned queues only): received and deleted, raw text."""
    bodies: list[str] = []
    while True:
        batch = list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60))
        if not batch:
            return bodies
        for message in batch:
            bodies.append(str(message.content))
            client.delete_message(message)


@dataclass
class Progress:
    rows: JournalRows
    rejected: dict[str, list[dict[str, str]]]
    poison_count: int
    poisoned_ids: set[str] = field(default_factory=set)
    unsettled: list[str] = field(default_factory=list)


def progress(storage: str, prefix: str, journal: object, poison: QueueClient,
             expected: Sequence[Expected]) -> Progress:
    rows = journal_rows(storage, prefix)
    rejected = {r.event_id: [dict(e) for e in r.errors]
                for r in journal.iter_rejections() if r.event_id}  # type: ignore[attr-defined]
    poison_count = poison.get_queue_properties().approximate_message_count if _exists(poison) else 0
    poisoned = poisoned_event_ids(poison) if poison_count else set()
    garbage = sum(1 for e in expected if e.kind == "garbage")
    unsettled = [e.event_id for e in expected if e.kind != "garbage"
                 and rows.headers.get(e.event_id, {}).get("Status") not in TERMINAL
                 and e.event_id not in rejected and e.event_id not in poisoned]
    if poison_count - len(poisoned) < garbage:
        unsettled.append(f"{garbage - poison_count + len(poisoned)} garbage bodies not yet poisoned")
    return Progress(rows, rejected, poison_count, poisoned, unsettled)


def poisoned_event_ids(poison: QueueClient) -> set[str]:
    """eventIds of valid-looking bodies in the poison queue (peek: at most 32, nothing is removed)."""
    ids: set[str] = set()
    for message in poison.peek_messages(max_messages=32):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            raw = json.loads(base64.b64decode(str(message.content), validate=True))
            if isinstance(raw, dict) and isinstance(raw.get("eventId"), str):
                ids.add(raw["eventId"])
    return ids


def _exists(client: QueueClient) -> bool:
    try:
        client.get_queue_properties()
    except Exception:  # noqa: BLE001 - a missing queue is the only expected failure here
        return False
    return True


def wait_settled(check: Callable[[], Progress], timeout: float, interval: float = 2.0,
                 on_tick: Callable[[float], None] | None = None) -> Progress:
    """Poll ``check`` until nothing is unsettled or ``timeout`` passes (returns the last state either way).

    A valid event whose message went to the poison queue (five failed deliveries) stays unsettled in the
    journal; the caller compares the poison count to decide whether that explains it.
    """
    start = time.monotonic()
    state = check()
    while state.unsettled and time.monotonic() - start < timeout:
        if on_tick is not None:
            on_tick(time.monotonic() - start)
        time.sleep(interval)
        state = check()
    return state
