"""``DeviceRegistry`` / ``DeviceRegistries`` over azure-iot-hub 2.7.0 (the only importer with dps.py).

Single-device changes are read-modify-writes of the whole ``Device``: read it, change ``status`` and
``statusReason``, write it back with ``If-Match: "<etag>"`` through the protocol client. The SDK's
``update_device_with_*`` helpers are avoided on purpose: they rebuild the device from their arguments
and would drop keys, thumbprints, ``iotEdge`` and scopes (docs/azure-behaviour.md §10.1). A 412 means a
concurrent writer: re-read and retry, bounded. The read is skipped when the last ``get`` of that device is
still in the registry's ``ReadCache`` (≤30 s old): the write then carries that read's etag as If-Match, so a
change made in between costs a 412 and a re-read, never a lost update.

Bulk changes (≤100 devices a call, the service limit) use ``POST /devices``
(``bulk_create_or_update_devices``), implemented in ``hub_bulk``; ``HubDeviceRegistry.bulk_disable``
documents the round trips. Both go through the hub's ``HubClient`` (errors translated, retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from azure.iot.hub import IoTHubRegistryManager

from shared.adapters import hub_bulk
from shared.adapters.hub_bulk import STATUS_REASON_MAX
from shared.adapters.hub_client import HubClient
from shared.adapters.read_cache import ReadCache
from shared.adapters.sdk_errors import deleted
from shared.errors import HubNotConfigured, NotFound, PreconditionFailed
from shared.model import HubDevice, HubDeviceStatus
from shared.plan import StepOutcome
from shared.ports import BulkResult, Change
from shared.retry import Retrier

log = logging.getLogger(__name__)

ETAG_ATTEMPTS = 5


def _quoted(etag: str | None) -> str:
    """If-Match value for an identity etag (bodies carry it unquoted; the header wants quotes, §4.3)."""
    if not etag:
        return '"*"'
    return etag if etag.startswith('"') and etag.endswith('"') and len(etag) > 1 else f'"{etag}"'


def to_hub_device(hub: str, model: Any) -> HubDevice:
    """SDK ``Device`` or ``Twin`` → ``HubDevice`` (a twin's ``deviceEtag`` is the identity's etag)."""
    etag = getattr(model, "device_etag", None) if hasattr(model, "device_etag") else model.etag
    return HubDevice(
        hub=hub,
        device_id=model.device_id,
        status=HubDeviceStatus(model.status or "enabled"),
        etag=etag,
        status_reason=model.status_reason,
    )


class HubDeviceRegistry:
    """The identity registry of one IoT hub, named by its host name."""

    def __init__(
        self,
        hub: str,
        manager: IoTHubRegistryManager,
        *,
        retrier: Retrier | None = None,
        ca_bundle: str | None = None,
        read_cache: ReadCache | None = None,
    ) -> None:
        self._client = HubClient(hub, manager, retrier=retrier, ca_bundle=ca_bundle)
        # Last device read by ``get`` per ID, consumed by the next status change of that ID (module doc).
        self._reads = read_cache if read_cache is not None else ReadCache()
        # Identities a bulk disable read for their keys, kept while its POST may be throttled (hub_bulk.py).
        self._keyed = ReadCache()

    @classmethod
    def from_connection_string(
        cls, connection_string: str, *, hub: str | None = None, retrier: Retrier | None = None,
        ca_bundle: str | None = None, read_cache: ReadCache | None = None,
    ) -> HubDeviceRegistry:
        host = host_name_of(connection_string)
        try:
            manager = IoTHubRegistryManager.from_connection_string(connection_string.strip().rstrip(";"))
        except (ValueError, KeyError) as error:  # never echo the string: it holds the key
            raise ValueError("malformed IoT Hub connection string") from error
        return cls(hub or host, manager, retrier=retrier, ca_bundle=ca_bundle, read_cache=read_cache)

    @classmethod
    def from_token_credential(
        cls, hub: str, credential: Any, *, retrier: Retrier | None = None, ca_bundle: str | None = None
    ) -> HubDeviceRegistry:
        """Identity-based access (e.g. ``DefaultAzureCredential``): a bearer token per request."""
        manager = IoTHubRegistryManager.from_token_credential(hub, credential)
        return cls(hub, manager, retrier=retrier, ca_bundle=ca_bundle)

    @property
    def hub(self) -> str:
        return self._client.hub

    @property
    def client(self) -> HubClient:
        """The hub's SDK client beneath (tests wrap its calls to race or count them)."""
        return self._client

    # ---- single device ------------------------------------------------------------------------------

    def get(self, device_id: str) -> HubDevice | None:
        """Always a real GET; the device read is kept for the next status change of this ID."""
        raw = self._client.get_raw(device_id)
        if raw is None:
            self._reads.discard(device_id)
            return None
        self._reads.put(device_id, raw)
        return to_hub_device(self.hub, raw)

    def _cached(self, device_id: str, status: HubDeviceStatus) -> Any | None:
        """The cached read of ``device_id``, if it can justify a conditional write: one already showing
        ``status`` cannot (an "already done" answer needs a fresh read: no If-Match would catch staleness)."""
        device = self._reads.take(device_id)
        if device is None or str(device.status or "enabled") == status.value:
            return None
        return device

    def _set_status(self, device_id: str, status: HubDeviceStatus, reason: str | None) -> Change:
        """Read-modify-write with If-Match; 412 (or 404: deleted since the read) → re-read, bounded."""
        what = f"hub set device status {status.value}"
        device = self._cached(device_id, status)
        for attempt in range(1, ETAG_ATTEMPTS + 1):
            if device is None:
                device = self._client.get_raw(device_id)
            if device is None:
                raise NotFound(f"{what} ({self.hub}): device not found")
            before = str(device.status or "enabled")
            if before == status.value:
                return Change(StepOutcome.ALREADY_DONE, before=before, after=before)
            device.status = status.value
            device.status_reason = reason[:STATUS_REASON_MAX] if reason else None
            etag = _quoted(device.etag)
            try:
                identities = self._client.protocol.devices
                write = partial(identities.create_or_update_identity, device_id, device, etag)
                self._client.call(what, write)
            except (PreconditionFailed, NotFound):
                log.info("%s: changed underneath (attempt %d), re-reading", what, attempt)
                device = None
                continue
            finally:
                self._reads.discard(device_id)
            return Change(StepOutcome.DONE, before=before, after=status.value)
        raise PreconditionFailed(f"{what} ({self.hub}): ETag kept changing after {ETAG_ATTEMPTS} attempts")

    def disable(self, device_id: str, reason: str | None = None) -> Change:
        """Disable; already disabled → ALREADY_DONE (reason left as it was); missing → ``NotFound``."""
        return self._set_status(device_id, HubDeviceStatus.DISABLED, reason)

    def enable(self, device_id: str) -> Change:
        """Enable and clear the status reason; already enabled → ALREADY_DONE; missing → ``NotFound``."""
        return self._set_status(device_id, HubDeviceStatus.ENABLED, None)

    def delete(self, device_id: str) -> Change:
        """Unconditional delete (``If-Match: "*"``); 404 counts as already done."""
        self._reads.discard(device_id)
        delete = partial(self._client.manager.delete_device, device_id)
        return deleted(lambda: self._client.call("hub delete device", delete))

    # ---- bulk and listing ---------------------------------------------------------------------------

    def bulk_disable(self, device_ids: Sequence[str], reason: str | Mapping[str, str] | None = None, *,
                     spend: Callable[[int], object] | None = None) -> BulkResult:
        """Disable up to 100 devices. Round trips per call, first round: one registry query page
        (``SELECT * FROM devices WHERE deviceId IN [...]``) to learn status, etag and authentication;
        one GET per *symmetric-key* device that still needs disabling (a query never returns keys, and
        an ``update`` import without them would regenerate or reject them); one bulk POST with
        ``updateIfMatchETag``. Devices already disabled cost nothing more; per-device 412s trigger another
        round for those devices only (bounded). Missing devices are reported failed ``DeviceNotFound``.
        """
        self._forget(device_ids)
        return hub_bulk.bulk_disable(self._client, device_ids, reason, rounds=ETAG_ATTEMPTS,
                                     spend=spend, keyed=self._keyed)

    def bulk_delete(self, device_ids: Sequence[str]) -> BulkResult:
        """Delete up to 100 devices in one POST (``importMode: delete``); DeviceNotFound → unchanged."""
        self._forget(device_ids)
        return hub_bulk.bulk_delete(self._client, device_ids)

    def _forget(self, device_ids: Sequence[str]) -> None:
        """Bulk writes change these devices: their cached reads are stale."""
        for device_id in device_ids:
            self._reads.discard(device_id)

    def iter_devices(self, page_size: int = 100) -> Iterator[HubDevice]:
        for twin in self._client.query("SELECT * FROM devices", page_size):
            yield to_hub_device(self.hub, twin)


def host_name_of(connection_string: str) -> str:
    """The ``HostName`` of a connection string (the value of no other field is ever returned)."""
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "HostName" and value:
            return value.strip()
    raise ValueError("connection string has no HostName")


class HubRegistries:
    """Finds the registry of a hub by host name (case-insensitive: host names are DNS names).

    ``connections`` maps host name → connection string; a host whose value is empty or None uses
    identity-based access with ``credential`` (default: azure-identity ``DefaultAzureCredential``,
    created once, on first use). An unknown hub raises ``HubNotConfigured`` — unless
    ``identity_fallback`` is set, for deployments whose settings list only the hubs that use keys
    (``Settings.iothub_connection`` returns None for every other hub).
    """

    def __init__(
        self,
        connections: Mapping[str, str | None],
        *,
        credential: Any | None = None,
        retrier: Retrier | None = None,
        ca_bundle: str | None = None,
        identity_fallback: bool = False,
    ) -> None:
        self._connections = {hub.lower(): (hub, cs or None) for hub, cs in connections.items()}
        self._identity_fallback = identity_fallback
        self._credential = credential
        self._retrier = retrier
        self._ca_bundle = ca_bundle
        self._cache: dict[str, HubDeviceRegistry] = {}

    def hubs(self) -> Iterable[str]:
        return [hub for hub, _ in self._connections.values()]

    def for_hub(self, hub: str) -> HubDeviceRegistry:
        key = hub.lower()
        if key in self._cache:
            return self._cache[key]
        if key not in self._connections and not self._identity_fallback:
            raise HubNotConfigured(f"no credentials configured for hub {hub!r}")
        name, connection_string = self._connections.get(key, (hub, None))
        if connection_string:
            registry = HubDeviceRegistry.from_connection_string(
                connection_string, hub=name, retrier=self._retrier, ca_bundle=self._ca_bundle
            )
        else:
            registry = HubDeviceRegistry.from_token_credential(
                name, self._token_credential(), retrier=self._retrier, ca_bundle=self._ca_bundle
            )
        self._cache[key] = registry
        return registry

    def _token_credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential
