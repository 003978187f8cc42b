"""Queue pump on real Azurite: delete on success, retry then poison, undecodable bodies poisoned at once."""

from __future__ import annotations

import base64
import contextlib
import time
import urllib.request
from collections.abc import Callable

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from devhost.azurite import AzuriteHandle
from devhost.host import Host
from devhost.queue_pump import STORAGE_API_VERSION, poison_queue_name

HostFactory = Callable[..., Host]


def _client(azurite: AzuriteHandle, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(
        azurite.connection_string, name, api_version=STORAGE_API_VERSION
    )
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def _exists(client: QueueClient) -> bool:
    try:
        client.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _calls(host: Host, name: str) -> list[object]:
    assert host.index is not None
    return [value for fn, value in host.index.module.CALLS if fn == name]


def _count(client: QueueClient) -> int:
    return int(client.get_queue_properties().approximate_message_count)


def test_good_message_invokes_the_function_once_and_is_deleted(
    make_host: HostFactory, azurite: AzuriteHandle, toy_settings: dict[str, str]
) -> None:
    queue = _client(azurite, toy_settings["TOY_QUEUE"])
    queue.send_message(base64.b64encode(b'{"id": 1}').decode())
    host = make_host()
    _wait_for(lambda: len(_calls(host, "work")) == 1)
    body, dequeue_count, message_id = _calls(host, "work")[0]  # type: ignore[misc]
    assert body == '{"id": 1}'
    assert dequeue_count == 1
    assert message_id
    _wait_for(lambda: _count(queue) == 0)
    time.sleep(0.5)  # nothing comes back after success
    assert len(_calls(host, "work")) == 1


def test_failing_message_is_retried_and_poisoned_with_raw_body_after_max_dequeue_count(
    make_host: HostFactory, azurite: AzuriteHandle, toy_settings: dict[str, str]
) -> None:
    name = toy_settings["TOY_FAIL_QUEUE"]
    queue = _client(azurite, name)
    raw = base64.b64encode(b"explode").decode()
    queue.send_message(raw)
    host = make_host()
    poison = QueueClient.from_connection_string(
        azurite.connection_string, f"{name}-poison", api_version=STORAGE_API_VERSION
    )
    _wait_for(lambda: len(_calls(host, "always_fails")) >= 5 and _count(queue) == 0)
    assert _calls(host, "always_fails") == [1, 2, 3, 4, 5]
    poisoned = [m.content for m in poison.receive_messages()]
    assert poisoned == [raw]  # the raw (still base64) body, not the decoded one


def test_undecodable_message_is_poisoned_at_once_without_invoking(
    make_host: HostFactory, azurite: AzuriteHandle, toy_settings: dict[str, str]
) -> None:
    name = toy_settings["TOY_QUEUE"]
    queue = _client(azurite, name)
    queue.send_message("not base64 !!")
    host = make_host()
    poison = QueueClient.from_connection_string(
        azurite.connection_string, f"{name}-poison", api_version=STORAGE_API_VERSION
    )
    _wait_for(lambda: _exists(poison) and _count(poison) == 1)
    assert [m.content for m in poison.receive_messages()] == ["not base64 !!"]
    assert _count(queue) == 0
    assert _calls(host, "work") == []


def test_poison_queue_name_rules() -> None:
    assert poison_queue_name("orders") == "orders-poison"
    assert poison_queue_name("orders-poison") is None
    assert poison_queue_name("q" * 57) is None  # 57 + 7 > 63 characters


def test_queue_output_binding_is_written_base64_and_triggers_the_queue_function(
    make_host: HostFactory, azurite: AzuriteHandle, toy_settings: dict[str, str]
) -> None:
    host = make_host(run_timers=False)
    assert host.http is not None
    request = urllib.request.Request(f"{host.http.base_url}/enqueue", data=b"from http", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
        assert response.status == 202
    _wait_for(lambda: [c[0] for c in _calls(host, "work")] == ["from http"])  # type: ignore[index]
