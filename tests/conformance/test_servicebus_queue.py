"""Service Bus stand-in through the unmodified SDK: send, peek-lock, settlement, dead-lettering, limits."""

from __future__ import annotations

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.exceptions import MessageSizeExceededError

from tests.conformance.servicebus_helper import StandIn

WAIT = 2


def _receive(client, name: str, count: int = 1, **kwargs):  # type: ignore[no-untyped-def]
    receiver = client.get_queue_receiver(name, **kwargs)
    receiver.__enter__()
    return receiver, receiver.receive_messages(max_message_count=count, max_wait_time=WAIT)


def test_properties_survive_the_round_trip(standin: StandIn, queue: str) -> None:
    with standin.client() as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(
                ServiceBusMessage(
                    b'{"eventId":"e1"}',
                    message_id="m-1",
                    correlation_id="corr-1",
                    content_type="application/json",
                    subject="lifecycle",
                    application_properties={"source": "tracker", "attempt": 3},
                )
            )
        receiver, messages = _receive(client, queue)
        with receiver:
            [msg] = messages
            assert b"".join(msg.body) == b'{"eventId":"e1"}'
            assert (msg.message_id, msg.correlation_id, msg.content_type, msg.subject) == (
                "m-1",
                "corr-1",
                "application/json",
                "lifecycle",
            )
            assert msg.application_properties == {b"source": b"tracker", b"attempt": 3}
            assert msg.delivery_count == 0  # AMQP header semantics: no earlier delivery
            assert msg.sequence_number >= 1
            assert msg.enqueued_time_utc is not None
            assert msg.lock_token is not None
            assert msg.locked_until_utc > msg.enqueued_time_utc
            receiver.complete_message(msg)
            assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []


def test_locked_message_is_invisible_to_a_second_receiver(standin: StandIn, queue: str) -> None:
    with standin.client() as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("only one"))
        first, got = _receive(client, queue)
        with first:
            assert len(got) == 1
            second, none = _receive(client, queue)
            with second:
                assert none == []
            first.complete_message(got[0])


def test_abandon_redelivers_with_delivery_count_plus_one(standin: StandIn, queue: str) -> None:
    with standin.client() as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("a"))
            sender.send_messages(ServiceBusMessage("b"))
        receiver, messages = _receive(client, queue, 2)
        with receiver:
            assert [str(m) for m in messages] == ["a", "b"]
            receiver.abandon_message(messages[0])
            receiver.complete_message(messages[1])
            again = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
            assert [(str(m), m.delivery_count) for m in again] == [("a", 1)]
            assert again[0].sequence_number == messages[0].sequence_number
            receiver.complete_message(again[0])


def test_dead_letter_with_reason_and_description(standin: StandIn, queue: str) -> None:
    with standin.client() as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(
                ServiceBusMessage("poison", message_id="p-1", application_properties={"k": "v"})
            )
        receiver, [msg] = _receive(client, queue)
        with receiver:
            receiver.dead_letter_message(msg, reason="SchemaInvalid", error_description="eventId missing")
            assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
        dlq, [dead] = _receive(client, queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        with dlq:
            assert (str(dead), dead.message_id) == ("poison", "p-1")
            assert (dead.dead_letter_reason, dead.dead_letter_error_description) == (
                "SchemaInvalid",
                "eventId missing",
            )
            assert dead.application_properties[b"k"] == b"v"
            dlq.complete_message(dead)


def test_max_delivery_count_moves_the_message_to_the_dead_letter_queue(standin: StandIn, queue: str) -> None:
    standin.server.broker.configure(queue, max_delivery_count=3)
    with standin.client() as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("never works"))
        seen = []
        with client.get_queue_receiver(queue) as receiver:
            for _ in range(4):
                got = receiver.receive_messages(max_message_count=1, max_wait_time=1)
                if not got:
                    break
                seen.append(got[0].delivery_count)
                receiver.abandon_message(got[0])
        assert seen == [0, 1, 2]
        dlq, [dead] = _receive(client, queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        with dlq:
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            assert (
                dead.dead_letter_error_description
                == "Message could not be consumed after 3 delivery attempts."
            )
            dlq.complete_message(dead)


def test_receive_and_delete_removes_at_once(standin: StandIn, queue: str) -> None:
    with standin.client() as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("gone"))
        receiver, [msg] = _receive(client, queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
        with receiver:
            assert str(msg) == "gone"
        again, none = _receive(client, queue)
        with again:
            assert none == []


def test_message_over_256_kb_is_refused(standin: StandIn, queue: str) -> None:
    with standin.client() as client, client.get_queue_sender(queue) as sender:
        with pytest.raises(MessageSizeExceededError):  # the SDK checks the link's max-message-size (262144)
            sender.send_messages(ServiceBusMessage(b"x" * (256 * 1024 + 1)))
        sender._max_message_size_on_link = 1024 * 1024
        with pytest.raises(MessageSizeExceededError):  # … and the stand-in refuses the transfer itself
            sender.send_messages(ServiceBusMessage(b"x" * (300 * 1024)))
        sender.send_messages(ServiceBusMessage(b"x" * (255 * 1024)))  # just under the limit passes
    assert standin.server.broker.describe()[queue]["active"] == 1


def test_batch_send_stores_each_inner_message(standin: StandIn, queue: str) -> None:
    # ServiceBusMessageBatch and send_messages([...]) travel as ONE transfer (message format 0x80013700) whose
    # data sections are whole messages; Service Bus stores each as its own message.
    with standin.client() as client:
        with client.get_queue_sender(queue) as sender:
            batch = sender.create_message_batch()
            for i in range(3):
                batch.add_message(
                    ServiceBusMessage(f"b{i}", message_id=f"b-{i}", correlation_id=f"c-{i}",
                                      application_properties={"i": i})
                )
            sender.send_messages(batch)
            sender.send_messages([ServiceBusMessage("only-in-list", message_id="l-1")])  # a batch of one
            sender.send_messages(ServiceBusMessage(b"\x00Su\xa0\x01x", message_id="raw"))  # plain binary body
        assert standin.server.broker.describe()[queue]["active"] == 5
        receiver, messages = _receive(client, queue, 10)
        with receiver:
            got = [(b"".join(m.body), m.message_id, m.correlation_id, m.application_properties)
                   for m in messages]
            assert got == [
                (b"b0", "b-0", "c-0", {b"i": 0}),
                (b"b1", "b-1", "c-1", {b"i": 1}),
                (b"b2", "b-2", "c-2", {b"i": 2}),
                (b"only-in-list", "l-1", None, None),
                (b"\x00Su\xa0\x01x", "raw", None, None),
            ]
            sequence = [m.sequence_number for m in messages]
            assert sequence == sorted(set(sequence))
            for message in messages:
                receiver.complete_message(message)
