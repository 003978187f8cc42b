"""A small real fleet in the emulator, built the way an installer would: enrollments through the DPS service
SDK, devices registering through the DPS device endpoint (which creates their hub identities).

Reusable by tests, benchmarks and the demo::

    fleet = Fleet(emulator_config)                 # the emulator.json dict (EmulatorHandle.config)
    dev = fleet.individual("meter-1")              # symmetric-key individual enrollment, registered
    members = fleet.group_members("line-a", 3)     # symmetric-key group and 3 registered members
    fleet.registration(dev)                        # "assigned" | "disabled" | "unauthorized"
    fleet.hub_status(dev)                          # "enabled" | "disabled" | None (no identity)

Only symmetric-key attestation: it needs no certificates, and it is what the group fan-out tests need.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from azure.iot.hub import IoTHubRegistryManager
from msrest.exceptions import HttpOperationError
from provisioningserviceclient import ProvisioningServiceClient
from provisioningserviceclient.models import AttestationMechanism, EnrollmentGroup, IndividualEnrollment

from emulator import sas


@dataclass(frozen=True)
class Device:
    registration_id: str
    key: str  # the device's own symmetric key (derived from the group key for group members)
    hub: str | None = None  # assigned hub host name after registration
    device_id: str | None = None
    group_id: str | None = None


class Fleet:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.dps = ProvisioningServiceClient.create_from_connection_string(config["dps"]["connectionString"])
        self._hubs = {h["hostName"].lower(): h["connectionString"] for h in config["hubs"]}

    # -- building ---------------------------------------------------------------------------------------
    def individual(self, registration_id: str, *, register: bool = True) -> Device:
        made = self.dps.create_or_update(IndividualEnrollment.create(
            registration_id, AttestationMechanism(type="symmetricKey")))
        device = Device(registration_id, str(made.attestation.symmetric_key.primary_key))
        return self.register(device) if register else device

    def symmetric_group(self, group_id: str) -> str:
        """Create a symmetric-key enrollment group; returns its primary key."""
        group = self.dps.create_or_update(EnrollmentGroup.create(
            group_id, AttestationMechanism(type="symmetricKey")))
        return str(group.attestation.symmetric_key.primary_key)

    def group_members(self, group_id: str, count: int, prefix: str | None = None) -> list[Device]:
        group_key = self.symmetric_group(group_id)
        names = [f"{prefix or group_id}-{i:03d}" for i in range(1, count + 1)]
        return [self.register(Device(n, sas.derive_device_key(group_key, n), group_id=group_id))
                for n in names]

    def register(self, device: Device) -> Device:
        """Register through the device endpoint; returns the device with its hub and device ID."""
        response = self.register_call(device)
        response.raise_for_status()
        state = response.json()["registrationState"]
        if state.get("status") != "assigned":
            raise AssertionError(f"{device.registration_id} not assigned: {state.get('status')}")
        return Device(device.registration_id, device.key, state["assignedHub"], state["deviceId"],
                      device.group_id)

    # -- observing --------------------------------------------------------------------------------------
    def register_call(self, device: Device) -> requests.Response:
        dps, reg = self.config["dps"], device.registration_id
        token = sas.make_token(f"{dps['idScope']}/registrations/{reg}", device.key, policy="registration")
        base = f"{dps['deviceEndpoint']}/{dps['idScope']}/registrations/{reg}"
        params, headers = {"api-version": "2021-06-01"}, {"Authorization": token}
        response = requests.put(f"{base}/register", params=params, json={"registrationId": reg},
                                headers=headers, verify=self.config["caBundle"], timeout=10)
        for _ in range(20):  # DPS flow: 202 assigning + operationId, poll after Retry-After until final
            if response.status_code != 202:
                break
            time.sleep(float(response.headers.get("Retry-After") or 0))
            response = requests.get(f"{base}/operations/{response.json()['operationId']}", params=params,
                                    headers=headers, verify=self.config["caBundle"], timeout=10)
        return response

    def registration(self, device: Device) -> str:
        """What the device sees when it (re)registers: assigned, disabled or unauthorized."""
        response = self.register_call(device)
        if response.status_code == 401:
            return "unauthorized"
        response.raise_for_status()
        return str(response.json()["status"])

    def registry(self, hub: str) -> IoTHubRegistryManager:
        return IoTHubRegistryManager.from_connection_string(self._hubs[hub.lower()])

    def hub_status(self, device: Device) -> str | None:
        """The hub identity's status through the real SDK; None when the identity does not exist."""
        if device.hub is None or device.device_id is None:
            return None
        try:
            return str(self.registry(device.hub).get_device(device.device_id).status)
        except HttpOperationError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise

    def enrollment_status(self, registration_id: str) -> str | None:
        try:
            return str(self.dps.get_individual_enrollment(registration_id).provisioning_status)
        except Exception as exc:  # the SDK raises its own ProvisioningServiceError
            if "404" in str(exc) or "NotFound" in str(exc):
                return None
            raise


# -- helpers shared by the function-app tests ----------------------------------------------------------------

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name: str, **overrides: Any) -> str:
    """A trigger payload from ``tests/functional/payloads`` as JSON text, with fields replaced."""
    import json

    document = json.loads((PAYLOADS / name).read_text(encoding="utf-8"))
    document.update(overrides)
    return json.dumps(document)
