"""The live probe of the demo fleet and its before/after table (used by ``devhost.demo_run``).

``FleetProbe`` reads each device's DPS and hub state with the service SDKs and asks the device itself whether
it can still register and send (live calls). The emulator gives TPM devices no hub key (real DPS returns it
encrypted to the TPM), so the probe reads that key from the hub registry as a stand-in. The fleet itself
(seeding, credentials) is :mod:`devhost.demo_fleet`.

Which device code asks: ``device_sdk="node"`` — Microsoft's Node.js device SDK, unchanged
(:mod:`devhost.node_device`; needs the emulator in standard-ports mode), for symmetric-key (individual and
group) and X.509 (individual self-signed, group via intermediate or root; the certificate goes in the TLS
handshake) devices; ``"python"`` — the project's :mod:`devhost.device_client`; ``"auto"`` (default) — Node
when the emulator runs on standard ports and the SDK is installed, else Python
(:func:`devhost.node_device.pick`). TPM devices always use the Python client with the emulator's stand-in
header: the emulator does not run DPS's TPM nonce challenge, so the SDK's TPM security client cannot work
(``emulator/README.md``, "Deliberate deviations and limits").
"""

from __future__ import annotations

import base64
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.iot.hub import IoTHubRegistryManager
from provisioningserviceclient import ProvisioningServiceClient, ProvisioningServiceError

from devhost import node_device
from devhost.demo_fleet import FLEET_DIR, FleetDevice
from devhost.device_client import DeviceClient, DpsEndpoint

PARALLEL_DEVICES = 4  # device calls in flight while probing a table (mostly Node start-up time)


@dataclass(frozen=True)
class ProbeRow:
    """One line of the fleet table."""

    registration_id: str
    hub: str
    path: str
    dps_status: str
    hub_status: str
    can_register: str
    can_send: str


def _status_code(exc: BaseException) -> int | None:
    """HTTP status behind an SDK error (ProvisioningServiceError wraps the msrest error in ``cause``)."""
    inner = getattr(exc, "cause", None) or exc
    response = getattr(inner, "response", None)
    return getattr(response, "status_code", None)


class FleetProbe:
    """Reads DPS / hub state with the service SDKs and asks each device what it can still do."""

    def __init__(self, config: dict[str, Any], state_dir: Path, *, device_sdk: str = "auto") -> None:
        self.device_sdk = node_device.pick(config, device_sdk)
        self.config = config
        self.fleet_dir = state_dir / FLEET_DIR
        self.endpoint = DpsEndpoint.from_emulator_config(config)
        self.psc = ProvisioningServiceClient.create_from_connection_string(config["dps"]["connectionString"])
        self.hub_names = {hub["hostName"]: hub["name"] for hub in config["hubs"]}
        self._registries = {
            hub["hostName"]: IoTHubRegistryManager.from_connection_string(hub["connectionString"])
            for hub in config["hubs"]}

    def _dps_status(self, device: FleetDevice) -> str:
        try:
            own = self.psc.get_individual_enrollment(device.registration_id)
        except ProvisioningServiceError as exc:
            if _status_code(exc) != 404:
                raise
        else:
            status = str(own.provisioning_status)
            return status if device.group_id is None else f"blocked ({status})"
        if device.group_id is None:
            return "deleted"
        try:
            return f"group {self.psc.get_enrollment_group(device.group_id).provisioning_status}"
        except ProvisioningServiceError as exc:
            if _status_code(exc) != 404:
                raise
            return "group deleted"

    def _hub_identity(self, hub: str | None, device_id: str) -> Any:
        registry = self._registries.get(hub or "")
        if registry is None:
            return None
        try:
            return registry.get_device(device_id)
        except Exception as exc:  # msrest HttpOperationError; only 404 means "absent"
            if _status_code(exc) == 404:
                return None
            raise

    def _send(self, client: DeviceClient, device: FleetDevice, hub: str | None) -> str:
        if hub is None:
            return "no (no hub)"
        key = None
        if device.kind == "tpm":  # stand-in for TPM key activation (module docstring)
            identity = self._hub_identity(hub, device.registration_id)
            sym = identity.authentication.symmetric_key if identity is not None else None
            # no identity, no key: a fresh random key stands for "the device has nothing valid"
            key = sym.primary_key if sym is not None else base64.b64encode(secrets.token_bytes(32)).decode()
        sent = client.send_telemetry(hub, device.registration_id, {"probe": True}, key=key)
        return "yes" if sent.accepted else f"no ({sent.http_status})"

    def _state(self, device: FleetDevice) -> tuple[str, str]:
        """(DPS enrollment status, hub identity status), read with the service SDKs."""
        identity = self._hub_identity(device.hub, device.registration_id)
        return self._dps_status(device), "absent" if identity is None else str(identity.status)

    def probe(self, device: FleetDevice) -> ProbeRow:
        """Read state first, then try to register, then try to send (on the hub the device knows)."""
        return self._ask_device(device, *self._state(device))

    def _ask_device(self, device: FleetDevice, dps_status: str, hub_status: str) -> ProbeRow:
        if self.device_sdk == "node" and device.kind != "tpm":
            return self._probe_node(device, dps_status, hub_status)
        client = DeviceClient(self.endpoint, device.credentials(self.fleet_dir))
        registration = client.register()
        can_register = "yes" if registration.assigned else f"no ({registration.status})"
        hub = registration.assigned_hub if registration.assigned else device.hub
        return ProbeRow(device.registration_id, self.hub_names.get(hub or "", hub or "-"), device.path,
                        dps_status, hub_status, can_register, self._send(client, device, hub))

    def _probe_node(self, device: FleetDevice, dps_status: str, hub_status: str) -> ProbeRow:
        """Register and send through the Node SDK; a refused device still tries its last known hub."""
        sdk_device = device.sdk_device(self.fleet_dir)
        # one node process: a refused device still tries the hub it last knew (device ID = registration ID)
        result = node_device.run(self.config, sdk_device, fallback_hub=device.hub)
        if result.registered and result.registration is not None:
            hub: str | None = result.registration["assignedHub"]
            can_register = "yes"
        else:
            error = result.registration_error or {}
            reason = error.get("resultStatus") or ("unauthorized" if error.get("statusCode") == 401
                                                   else error.get("name", "error"))
            can_register, hub = f"no ({reason})", device.hub
        if hub is None:
            can_send = "no (no hub)"
        elif result.sent:
            can_send = "yes"
        else:
            can_send = f"no ({(result.send or {}).get('statusCode')})"
        return ProbeRow(device.registration_id, self.hub_names.get(hub or "", hub or "-"), device.path,
                        dps_status, hub_status, can_register, can_send)

    def table(self, devices: list[FleetDevice]) -> list[ProbeRow]:
        """Every device's state first (one thread: the service clients are shared), then the devices
        themselves, a few at a time (each device call is its own ``node`` process or HTTP session)."""
        states = [self._state(device) for device in devices]
        with ThreadPoolExecutor(max_workers=PARALLEL_DEVICES) as pool:
            return list(pool.map(lambda item: self._ask_device(item[0], *item[1]), zip(devices, states,
                                                                                       strict=True)))


COLUMNS = ("registration ID", "hub", "enrollment path", "DPS enrollment", "hub identity",
           "can register?", "can send?")


def format_table(rows: list[ProbeRow]) -> str:
    """Plain-text table, columns separated by `` | `` (easy to read, easy to parse)."""
    cells = [COLUMNS, *[(r.registration_id, r.hub, r.path, r.dps_status, r.hub_status, r.can_register,
                         r.can_send) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = [" | ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)
