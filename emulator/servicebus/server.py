"""The stand-in's listener: a proton reactor on its own thread, amqps on a loopback port with the
emulator's CA.

``ServiceBusStandIn(tls, host).start()`` binds (port 0 = a free port), returns the ``serviceBus`` block of
emulator.json and serves until ``stop()``. The SAS key of ``RootManageSharedAccessKey`` is random per start,
or kept in ``<state>/servicebus-key.json`` when ``key_file`` is given (``--persist``). Messages are
not persisted.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import threading
from pathlib import Path
from typing import Any, Protocol

from proton import SSLDomain
from proton.reactor import ApplicationEvent, Container, EventInjector

from emulator.servicebus.broker import Broker
from emulator.servicebus.links import ServiceBusHandler
from emulator.servicebus.management import Management

POLICY = "RootManageSharedAccessKey"
TICK = 0.1  # lock-expiry resolution, seconds

log = logging.getLogger("emulator.servicebus")


class TlsMaterial(Protocol):
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _load_key(key_file: Path | None) -> str:
    if key_file is not None and key_file.is_file():
        return str(json.loads(key_file.read_text(encoding="utf-8"))["key"])
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    if key_file is not None:
        key_file.write_text(json.dumps({"policy": POLICY, "key": key}), encoding="utf-8")
        key_file.chmod(0o600)
    return key


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _Ticker:
    """Expires locks and wakes receivers every TICK seconds, on the reactor thread."""

    def __init__(self, handler: ServiceBusHandler) -> None:
        self.handler = handler

    def on_timer_task(self, event: Any) -> None:
        self.handler.broker.expire_locks()
        self.handler.pump_dirty()
        event.container.schedule(TICK, self)


class _Control:
    def __init__(self, standin: ServiceBusStandIn) -> None:
        self.standin = standin

    def on_stop(self, event: Any) -> None:
        if self.standin._acceptor is not None:
            self.standin._acceptor.close()
        if self.standin._container is not None:
            self.standin._container.stop()

    def on_wake(self, event: Any) -> None:
        self.standin.handler.pump_all()


class ServiceBusStandIn:
    """AMQP 1.0 Service Bus namespace stand-in (queues, topics/subscriptions, CBS SAS, peek-lock)."""

    def __init__(
        self,
        tls: TlsMaterial,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        key_file: Path | None = None,
        broker: Broker | None = None,
    ) -> None:
        self.tls = tls
        self.host = host
        self.port = port
        self.key = _load_key(key_file)
        self.broker = broker or Broker()
        self.handler = ServiceBusHandler(self.broker, {POLICY: self.key}, Management(self.broker))
        self._injector = EventInjector()
        self._container: Container | None = None
        self._acceptor: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.port}/;SharedAccessKeyName={POLICY};SharedAccessKey={self.key}"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "hostName": f"{self.host}:{self.port}",
            "connectionString": self.connection_string,
            "caBundle": str(self.tls.ca_cert),
            "policy": POLICY,
        }

    def start(self) -> dict[str, Any]:
        self.port = self.port or _free_port(self.host)
        container = Container(self.handler, _Control(self))
        container.container_id = "servicebus-standin"
        self._container = container
        self._thread = threading.Thread(target=self._run, name=f"servicebus-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"Service Bus stand-in did not start: {self._error!r}")
        return self.describe()

    def _run(self) -> None:
        container = self._container
        assert container is not None  # noqa: S101 - set by start()
        try:
            domain = SSLDomain(SSLDomain.MODE_SERVER)
            domain.set_credentials(str(self.tls.server_cert), str(self.tls.server_key), None)
            container.selectable(self._injector)
            self._acceptor = container.listen(f"amqps://{self.host}:{self.port}", ssl_domain=domain)
            container.schedule(TICK, _Ticker(self.handler))
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            container.run()
        except Exception:
            log.exception("Service Bus stand-in stopped on an error")

    def wake(self) -> None:
        """Push available messages to waiting receivers (after a change made outside the reactor thread)."""
        self._injector.trigger(ApplicationEvent("wake"))

    def stop(self) -> None:
        if self._thread is None:
            return
        self._injector.trigger(ApplicationEvent("stop"))
        self._thread.join(timeout=10)
        self._thread = None

    def reset(self) -> None:
        """Drop every entity and message (``clean_emulator``)."""
        self.broker.reset()
