"""Storage-queue triggers: lifecycle events, and group fan-out batches from the work queue.

Both bodies are base64 text (the host's default ``messageEncoding``). A function that returns acknowledges
the message (valid or rejected-and-recorded); a function that raises leaves it to the host's redelivery
(``maxDequeueCount`` = 5 in host.json), then ``<queue>-poison``, which the audit reports.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

import azure.functions as func

from unprovision import service, wiring
from unprovision.triggers import setting_expr

log = logging.getLogger(__name__)


def lifecycle_queue(msg: func.QueueMessage) -> None:
    """One lifecycle event: parse, apply, log the outcome; raises only for retryable failures."""
    attempt = getattr(msg, "dequeue_count", None)
    outcome = service.handle_event_body(msg.get_body(), wiring.services())
    service.log_outcome(log, f"lifecycle message {msg.id}", outcome, attempt=attempt, queue="lifecycle")


HOST_JSON = Path(__file__).resolve().parent.parent.parent / "host.json"


@cache
def max_dequeue_count() -> int:
    """host.json's ``extensions.queues.maxDequeueCount`` (the host's default, 5, when absent)."""
    try:
        document = json.loads(HOST_JSON.read_text(encoding="utf-8"))
        return int(document["extensions"]["queues"]["maxDequeueCount"])
    except (OSError, ValueError, KeyError, TypeError):
        return 5


def work_queue(msg: func.QueueMessage) -> None:
    """One batch of a group fan-out; the last batch completes the group event. On the message's last
    delivery a failing batch is settled as failed (its event then finishes failed and can be resumed)
    instead of raising into the poison queue where nothing would finish its event."""
    last = (msg.dequeue_count or 1) >= max_dequeue_count()
    outcome = service.handle_work_batch(msg.get_body(), wiring.services(), last_delivery=last)
    service.log_outcome(log, f"work batch {msg.id}", outcome, attempt=msg.dequeue_count, queue="work")


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions 1.26
    bp.function_name("lifecycle_queue")(bp.queue_trigger(
        arg_name="msg", queue_name=setting_expr("LIFECYCLE_QUEUE", "device-lifecycle"),
        connection="AzureWebJobsStorage")(lifecycle_queue))
    bp.function_name("work_queue")(bp.queue_trigger(
        arg_name="msg", queue_name=setting_expr("WORK_QUEUE", "device-lifecycle-work"),
        connection="AzureWebJobsStorage")(work_queue))
    return bp
