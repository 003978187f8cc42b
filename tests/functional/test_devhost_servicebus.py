"""The local host's Service Bus trigger over the unmodified SDK receiver and the emulator's AMQP stand-in.

No mock at the Service Bus boundary: messages are sent and read back with ``azure-servicebus``, the host
receives them with the SDK's receiver in peek-lock, and the stand-in applies Service Bus's settlement rules
(emulator/README.md, "Service Bus"; docs/azure-behaviour.md §F3).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue

from devhost.host import Host
from devhost.settings import ServiceBusOptions, read_host_json
from emulator.servicebus import ServiceBusStandIn
from emulator.tls import ensure_tls
from shared.adapters.servicebus_connect import client_from_connection_string

HostFactory = Callable[..., Host]


LOCK = 5.0  # seconds; the toy app's "slow" orders take 7 s (tests/functional/toyapp/function_app.py)

def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceBusStandIn]:
    """A fresh namespace per test (the toy app's queue is always ``orders``)."""
    tls = ensure_tls(tmp_path / "sb")
    server = ServiceBusStandIn(tls)
    server.start()
    monkeypatch.setenv("SERVICEBUS_CA_BUNDLE", str(tls.ca_cert))
    yield server
    server.stop()


def _send(server: ServiceBusStandIn, *bodies: str, **properties: Any) -> None:
    with client_from_connection_string(server.connection_string) as client, \
            client.get_queue_sender("orders") as sender:
        for body in bodies:
            sender.send_messages(ServiceBusMessage(body, **properties))


def _counts(server: ServiceBusStandIn, entity: str = "orders") -> dict[str, int]:
    return server.broker.describe().get(entity, {})


def _calls(host: Host) -> list[Any]:
    assert host.index is not None
    return [args for name, args in host.index.module.CALLS if name == "orders"]


def _sb_host(make_host: HostFactory, server: ServiceBusStandIn, **settings: str) -> Host:
    return make_host(settings={"TOY_SERVICEBUS": server.connection_string, **settings}, run_timers=False,
                     serve_http=False)


def test_message_is_completed_after_success(make_host: HostFactory, standin: ServiceBusStandIn) -> None:
    host = _sb_host(make_host, standin)
    _send(standin, "good order", application_properties={"kind": "test"})
    _wait_for(lambda: _counts(standin).get("completed") == 1)
    assert _calls(host) == [("good order", 1)]  # the host reports a first delivery as 1
    assert _counts(standin)["active"] == 0
    assert _counts(standin, "orders/$deadletterqueue")["active"] == 0


def test_failing_message_is_abandoned_redelivered_and_dead_lettered_at_max_delivery_count(
    make_host: HostFactory, standin: ServiceBusStandIn
) -> None:
    standin.broker.configure("orders", max_delivery_count=4)
    host = _sb_host(make_host, standin)
    _send(standin, "bad order", "good order")
    _wait_for(lambda: _counts(standin, "orders/$deadletterqueue").get("active") == 1)
    _wait_for(lambda: _counts(standin).get("completed") == 1)
    assert [count for body, count in _calls(host) if body == "bad order"] == [1, 2, 3, 4]
    with client_from_connection_string(standin.connection_string) as client, \
            client.get_queue_receiver("orders", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = dlq.receive_messages(max_message_count=1, max_wait_time=5)
        dlq.complete_message(dead)
    assert (str(dead), dead.dead_letter_reason, dead.delivery_count) == (
        "bad order", "MaxDeliveryCountExceeded", 4)


def test_lock_is_renewed_while_the_function_runs(make_host: HostFactory, standin: ServiceBusStandIn) -> None:
    # host.json maxAutoLockRenewalDuration (default 5 min): a 7 s invocation on a 5 s lock completes once.
    # Not shorter: for a lock under 10 s the SDK's AutoLockRenewer renews when 0.75 x the lock's whole seconds
    # are left, which on a 2 s lock is 0.75 s — less than its dispatcher can promise on a loaded machine.
    standin.broker.configure("orders", lock_duration=LOCK)
    host = _sb_host(make_host, standin)
    _send(standin, "slow order")
    _wait_for(lambda: _counts(standin).get("completed") == 1)
    time.sleep(0.5)
    assert _calls(host) == [("slow order", 1)]


def test_without_lock_renewal_a_slow_message_is_redelivered(
    make_host: HostFactory, standin: ServiceBusStandIn
) -> None:
    standin.broker.configure("orders", lock_duration=LOCK)
    host = _sb_host(make_host, standin,
                    AzureFunctionsJobHost__extensions__serviceBus__maxAutoLockRenewalDuration="00:00:00")
    _send(standin, "slow order")
    _wait_for(lambda: len(_calls(host)) >= 2)  # the lock ran out mid-invocation: delivered again
    assert _calls(host)[:2] == [("slow order", 1), ("slow order", 2)]


def test_service_bus_function_is_not_registered_without_its_connection(make_host: HostFactory) -> None:
    host = make_host(run_timers=False, serve_http=False)
    assert host.sb_pumps == {}


def test_host_json_service_bus_settings_are_read(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        '{"version": "2.0", "extensions": {"serviceBus": {"prefetchCount": 20, "maxConcurrentCalls": 2,'
        ' "autoCompleteMessages": false, "maxAutoLockRenewalDuration": "00:01:30"}}}', encoding="utf-8")
    assert read_host_json(tmp_path).service_bus == ServiceBusOptions(
        auto_complete_messages=False, max_concurrent_calls=2, prefetch_count=20,
        max_auto_lock_renewal_duration=90.0)
    override = {"AzureFunctionsJobHost__extensions__serviceBus__prefetchCount": "0"}
    overridden = read_host_json(tmp_path, override)
    assert overridden.service_bus.prefetch_count == 0
    (tmp_path / "host.json").write_text('{"version": "2.0"}', encoding="utf-8")
    assert read_host_json(tmp_path).service_bus == ServiceBusOptions(
        auto_complete_messages=True, max_concurrent_calls=16, prefetch_count=0,
        max_auto_lock_renewal_duration=300.0)
