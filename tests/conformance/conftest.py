"""Conformance fixtures: the Service Bus stand-in, one per module, and a fresh queue name per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.servicebus import ServiceBusStandIn
from emulator.tls import ensure_tls
from tests.conformance.servicebus_helper import StandIn


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
