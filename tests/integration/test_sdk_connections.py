"""Both service SDKs keep their connection between calls (docs/azure-behaviour.md §6, "Connections").

msrest closes its session after every call unless ``keep_alive`` is set, so each call opened a new TCP and
TLS connection. Counted here on the client's own urllib3 pool: the adapters' calls from one thread share one.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.dps import DpsProvisioningService
from shared.adapters.iothub import HubDeviceRegistry

pytest.importorskip("emulator.testing", reason="the emulator's test fixtures are not there yet")


def connections_made(msrest_client: Any, base_url: str) -> int:
    """New connections the msrest client's (this thread's) requests session opened, over all its pools; 0
    when msrest closed the session after the last call (its pools, and their counts, are then gone)."""
    session = msrest_client.config.pipeline._sender.driver.session
    pools = session.get_adapter(base_url).poolmanager.pools
    # urllib3 RecentlyUsedContainer: keys(), since iterating it raises
    return sum(int(pools[key].num_connections) for key in pools.keys())  # noqa: SIM118


def test_dps_reads_reuse_one_connection(clean_emulator: Any) -> None:
    dps = DpsProvisioningService.from_connection_string(clean_emulator.dps_connection_string)
    for n in range(5):
        assert dps.get_enrollment(f"absent-{n}") is None
    client = dps._client._runtime_client
    assert connections_made(client, f"https://{dps.host_name}") == 1


def test_hub_reads_reuse_one_connection(clean_emulator: Any) -> None:
    hub = HubDeviceRegistry.from_connection_string(clean_emulator.hubs[0]["connectionString"])
    for n in range(5):
        assert hub.get(f"absent-{n}") is None
    protocol = hub._client.protocol
    assert connections_made(protocol, f"https://{hub.hub}") == 1
