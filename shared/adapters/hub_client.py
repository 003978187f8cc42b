"""One IoT hub's registry API as the adapters use it: every SDK call translated and retried.

``HubDeviceRegistry`` (single-device changes, iothub.py) and the bulk round trips (hub_bulk.py) both
read and write through this one client, so that neither needs the other: the registry composes the bulk
functions, and the bulk functions see only the calls they make.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import QuerySpecification

from shared.adapters.sdk_errors import guarded
from shared.errors import NotFound
from shared.retry import Retrier

T = TypeVar("T")


class HubClient:
    """The SDK's registry manager of one hub (named by its host name) under the adapters' ``Retrier``."""

    def __init__(
        self, hub: str, manager: IoTHubRegistryManager, *, retrier: Retrier | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self.hub = hub
        self.manager = manager
        self._retrier = retrier or Retrier()
        if ca_bundle:
            manager.protocol.config.connection.verify = ca_bundle  # per client, no env mutation (§6)
        manager.protocol.config.keep_alive = True  # one TLS connection per thread, not per call (§6)

    @property
    def protocol(self) -> Any:
        """The SDK's generated client: conditional writes go through it (the manager's helpers cannot)."""
        return self.manager.protocol

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one SDK call: errors translated, transient ones retried (bounded)."""
        return self._retrier.call(lambda: guarded(fn, f"{what} ({self.hub})"), name=what)

    def get_raw(self, device_id: str) -> Any | None:
        """The SDK ``Device`` (keys included), read now; None when the hub has no such device."""
        try:
            return self.call("hub get device", lambda: self.manager.get_device(device_id))
        except NotFound:
            return None

    def query(self, sql: str, page_size: int) -> Iterator[Any]:
        """Every item of a registry query, following continuation tokens; each page retried alone."""
        spec = QuerySpecification(query=sql)
        token: str | None = None
        while True:
            def page(t: str | None = token) -> Any:
                return self.manager.query_iot_hub(spec, continuation_token=t, max_item_count=page_size)

            result = self.call("hub query devices", page)
            items = result.items or []
            yield from items
            token = result.continuation_token
            if not token or not items:
                return
