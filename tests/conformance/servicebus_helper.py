"""Fixtures for the Service Bus stand-in conformance tests: one stand-in per module, one queue per test.

Every client here is the unmodified azure-servicebus SDK, given only what any caller of the stand-in gives it
(``shared.adapters.servicebus_connect``: the endpoint's port and the emulator CA).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulator.servicebus import ServiceBusStandIn
from emulator.tls import ensure_tls
from shared.adapters.servicebus_connect import client_from_connection_string


@dataclass
class StandIn:
    server: ServiceBusStandIn
    ca_bundle: str

    @property
    def connection_string(self) -> str:
        return self.server.connection_string

    def client(self, connection_string: str | None = None, **kwargs: Any) -> Any:
        return client_from_connection_string(
            connection_string or self.connection_string, ca_bundle=self.ca_bundle, **kwargs
        )


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    state: Path = tmp_path_factory.mktemp("servicebus")
    tls = ensure_tls(state)
    server = ServiceBusStandIn(tls)
    server.start()
    yield StandIn(server, str(tls.ca_cert))
    server.stop()


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"
