"""Service Bus pump over the in-memory FAKE broker (no broker can run here, docs/azure-behaviour.md §F8).

The fake is the boundary being substituted; the pump, the indexing and the invocation are real.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from devhost.host import Host
from devhost.servicebus import MAX_DELIVERY_REASON, InMemoryBroker

HostFactory = Callable[..., Host]
SB_SETTINGS = {"TOY_SERVICEBUS": "Endpoint=sb://placeholder.invalid/;SharedAccessKeyName=n;SharedAccessKey=k"}


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def sb_host(make_host: HostFactory) -> tuple[Host, InMemoryBroker]:
    broker = InMemoryBroker()
    host = make_host(broker=broker, settings=SB_SETTINGS, run_timers=False, serve_http=False)
    return host, broker


def test_message_is_completed_after_success(sb_host: tuple[Host, InMemoryBroker]) -> None:
    host, broker = sb_host
    broker.send("orders", b"good order", application_properties={"kind": "test"})
    _wait_for(lambda: len(broker.completed("orders")) == 1)
    assert host.index is not None
    assert ("orders", ("good order", 1)) in host.index.module.CALLS
    assert broker.active_count("orders") == 0
    assert broker.dead_letters("orders") == []


def test_failing_message_is_abandoned_redelivered_and_dead_lettered_at_max_delivery_count(
    sb_host: tuple[Host, InMemoryBroker],
) -> None:
    host, broker = sb_host
    broker.send("orders", "bad order")
    _wait_for(lambda: len(broker.dead_letters("orders")) == 1)
    assert host.index is not None
    deliveries = [count for name, (body, count) in host.index.module.CALLS if name == "orders"]
    assert deliveries == list(range(1, 11))
    dead = broker.dead_letters("orders")[0]
    assert (dead.body, dead.dead_letter_reason, dead.delivery_count) == (
        b"bad order",
        MAX_DELIVERY_REASON,
        10,
    )
    assert broker.completed("orders") == []


def test_fake_broker_peek_lock_semantics() -> None:
    broker = InMemoryBroker(max_delivery_count=2)
    receiver = broker.receiver("q")
    broker.send("q", "x")
    first = receiver.receive(5, 0.1)
    assert [m.delivery_count for m in first] == [1]
    assert receiver.receive(5, 0.05) == []  # locked: not visible to a second receive
    receiver.abandon(first[0])
    second = receiver.receive(5, 0.1)
    assert [m.delivery_count for m in second] == [2]
    receiver.abandon(second[0])
    assert [m.dead_letter_reason for m in broker.dead_letters("q")] == [MAX_DELIVERY_REASON]
    with pytest.raises(LookupError):
        receiver.complete(second[0])


def test_service_bus_function_is_not_registered_without_its_connection(make_host: HostFactory) -> None:
    host = make_host(broker=InMemoryBroker(), run_timers=False, serve_http=False)
    assert host.sb_pumps == {}


# ---- the same pump over the unmodified SDK receiver and the emulator's Service Bus stand-in ---------------

@pytest.fixture
def sb_standin(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from emulator.servicebus import ServiceBusStandIn
    from emulator.tls import ensure_tls

    tls = ensure_tls(tmp_path_factory.mktemp("sb"))
    server = ServiceBusStandIn(tls)
    server.start()
    yield server, str(tls.ca_cert)
    server.stop()


def test_sdk_receiver_completes_and_abandons_to_dead_letter(  # type: ignore[no-untyped-def]
    make_host: HostFactory, sb_standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.servicebus import ServiceBusMessage

    from shared.adapters.servicebus_connect import client_from_connection_string

    server, ca = sb_standin
    monkeypatch.setenv("SERVICEBUS_CA_BUNDLE", ca)
    server.broker.configure("orders", max_delivery_count=3)
    host = make_host(settings={"TOY_SERVICEBUS": server.connection_string}, run_timers=False,
                     serve_http=False)
    with (client_from_connection_string(server.connection_string) as client,
          client.get_queue_sender("orders") as s):
        s.send_messages(ServiceBusMessage("good order"))
        s.send_messages(ServiceBusMessage("bad order"))
    _wait_for(lambda: server.broker.describe().get("orders/$deadletterqueue", {}).get("active") == 1, 30)
    _wait_for(lambda: server.broker.describe()["orders"]["completed"] == 1, 30)
    assert host.index is not None
    calls = [args for name, args in host.index.module.CALLS if name == "orders"]
    assert ("good order", 1) in calls
    assert [count for body, count in calls if body == "bad order"] == [1, 2, 3]
