"""The outcome notifier sends one message per finished event with the SDK's ServiceBusSender."""

from __future__ import annotations

import json

import pytest

from shared.adapters.notifier import OutcomeNotifier, ServiceBusOutcomeSender
from tests.conformance.servicebus_helper import StandIn


def test_outcome_message_carries_event_and_correlation_ids(
    standin: StandIn, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICEBUS_CA_BUNDLE", standin.ca_bundle)
    notifier = OutcomeNotifier(ServiceBusOutcomeSender(standin.connection_string, queue))
    notifier.publish({"eventId": "ev-1", "correlationId": "corr-9", "status": "applied"})
    with standin.client() as client, client.get_queue_receiver(queue) as receiver:
        [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
        receiver.complete_message(msg)
    assert (msg.message_id, msg.correlation_id, msg.content_type) == (
        "ev-1:applied",
        "corr-9",
        "application/json",
    )
    assert json.loads(str(msg))["eventId"] == "ev-1"
