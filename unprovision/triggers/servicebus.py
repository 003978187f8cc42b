"""Service Bus queue trigger: a second source of lifecycle events, same contract as the storage queue.

Registered only when ``SERVICEBUS_CONNECTION`` (a connection string, or identity-based
``SERVICEBUS_CONNECTION__fullyQualifiedNamespace``) is present when ``function_app.py`` is imported. The queue
is ``%SERVICEBUS_QUEUE%`` (default ``device-lifecycle``). Retry: raising abandons the message; the broker
dead-letters it after the entity's MaxDeliveryCount.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import azure.functions as func

from shared.adapters.settings import SERVICEBUS_CONNECTION, resolve_connection
from unprovision import service, wiring
from unprovision.triggers import setting_expr

log = logging.getLogger(__name__)


def configured(environ: Mapping[str, str] | None = None) -> bool:
    return resolve_connection(os.environ if environ is None else environ, SERVICEBUS_CONNECTION) is not None


def lifecycle_servicebus(sbmsg: func.ServiceBusMessage) -> None:
    """One lifecycle event from Service Bus: parse, apply, log; raises only for retryable failures."""
    outcome = service.handle_event_body(sbmsg.get_body(), wiring.services())
    service.log_outcome(log, f"service bus message {sbmsg.message_id}", outcome,
                        attempt=getattr(sbmsg, "delivery_count", None), queue="servicebus")


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions 1.26
    bp.function_name("lifecycle_servicebus")(bp.service_bus_queue_trigger(
        arg_name="sbmsg", queue_name=setting_expr("SERVICEBUS_QUEUE", "device-lifecycle"),
        connection=SERVICEBUS_CONNECTION)(lifecycle_servicebus))
    return bp
