"""Service Bus stand-in: CBS SAS authentication and peek-lock expiry, through the unmodified SDK."""

from __future__ import annotations

import time

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageLockLostError,
    ServiceBusAuthenticationError,
    ServiceBusConnectionError,
)

from tests.conformance.servicebus_helper import StandIn


def test_wrong_key_gets_the_sdk_authentication_error(standin: StandIn, queue: str) -> None:
    wrong = standin.connection_string.replace(standin.server.key, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
    # The SDK raises ServiceBusConnectionError instead of ServiceBusAuthenticationError whenever
    # custom_endpoint_address is set (its "uamqp parity" rule), which the stand-in's port needs; the cause is
    # still the CBS 401 (TokenAuthFailure). Against Azure (no port) the same failure is the authentication
    # error.
    with (
        standin.client(wrong, retry_total=0) as client,
        pytest.raises((ServiceBusAuthenticationError, ServiceBusConnectionError)) as caught,
        client.get_queue_sender(queue) as sender,
    ):
        sender.send_messages(ServiceBusMessage("never"))
    cause = caught.value.__cause__ or getattr(caught.value, "inner_exception", None)
    assert "TokenAuthFailure" in repr(cause) or "401" in repr(cause), repr(cause)
    assert queue not in standin.server.broker.describe()


def test_lock_expiry_redelivers_and_the_old_lock_is_lost(standin: StandIn, queue: str) -> None:
    standin.server.broker.configure(queue, lock_duration=1.0)
    with standin.client() as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("slow"))
        with client.get_queue_receiver(queue) as receiver:
            [first] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
            time.sleep(1.5)
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(first)
            [again] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
            assert (str(again), again.delivery_count) == ("slow", 1)
            receiver.renew_message_lock(again)
            receiver.complete_message(again)
