"""The Service Bus stand-in as the conformance tests see it (fixtures in tests/conformance/conftest.py).

Every client here is the unmodified azure-servicebus SDK, given only what any caller of the stand-in gives it
(``shared.adapters.servicebus_connect``: the endpoint's port and the emulator CA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.servicebus import ServiceBusStandIn
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
