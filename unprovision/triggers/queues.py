"""Storage-queue triggers: lifecycle events, and group fan-out batches from the work queue.

Both bodies are base64 text (the host's default ``messageEncoding``). A function that returns acknowledges
the message (valid or rejected-and-recorded); a function that raises leaves it to the host's redelivery
(``maxDequeueCount`` = 5 in host.json), then ``<queue>-poison``, which the audit reports.
"""

from __future__ import annotations

import logging

import azure.functions as func

from unprovision import service, wiring
from unprovision.triggers import setting_expr

log = logging.getLogger(__name__)


def lifecycle_queue(msg: func.QueueMessage) -> None:
    """One lifecycle event: parse, apply, log the outcome; raises only for retryable failures."""
    attempt = getattr(msg, "dequeue_count", None)
    outcome = service.handle_event_body(msg.get_body(), wiring.services())
    log.info("lifecycle message %s (attempt %s): event %s %s", msg.id, attempt, outcome.event_id,
             outcome.status)


def work_queue(msg: func.QueueMessage) -> None:
    """One batch of a group fan-out; the last batch completes the group event."""
    outcome = service.handle_work_batch(msg.get_body(), wiring.services())
    log.info("work batch %s: event %s %s", msg.id, outcome.event_id, outcome.status)


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions 1.26
    bp.function_name("lifecycle_queue")(bp.queue_trigger(
        arg_name="msg", queue_name=setting_expr("LIFECYCLE_QUEUE", "device-lifecycle"),
        connection="AzureWebJobsStorage")(lifecycle_queue))
    bp.function_name("work_queue")(bp.queue_trigger(
        arg_name="msg", queue_name=setting_expr("WORK_QUEUE", "device-lifecycle-work"),
        connection="AzureWebJobsStorage")(work_queue))
    return bp
