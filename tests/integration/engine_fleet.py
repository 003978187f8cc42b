"""Fleets in the emulator for the engine integration tests, built the way a real fleet comes to exist.

Small fleets are built through the real provisioning SDK (enrollments, groups) and the devices then
*register themselves* at the emulator's DPS device endpoint, which creates the registration records and the
hub identities exactly as DPS does. Large fleets (hundreds of devices) are seeded through the emulator's
admin API, which is fast and yields the same wire shapes. ``Device`` carries what a device holds (its key or
its certificate chain), so a test can ask afterwards: may it still register? may it still send?
"""

from __future__ import annotations

import base64
import random
import secrets
from dataclasses import dataclass
from typing import Any

from msrest.exceptions import HttpOperationError
from provisioningserviceclient import ProvisioningServiceClient
from provisioningserviceclient.models import AttestationMechanism, EnrollmentGroup, IndividualEnrollment
from provisioningserviceclient.protocol.models import SymmetricKeyAttestation

from emulator import sas
from shared.adapters import blob_container
from shared.adapters.dps import DpsProvisioningService
from shared.adapters.iothub import HubRegistries
from shared.events import LifecycleEvent, parse_event
from shared.policy import DEFAULT_POLICY
from shared.ports import Journal
from shared.retry import Retrier, RetryPolicy
from tests.conformance.certs_helper import chain_header, device_sas, register_device
from tests.support.certs import IssuedCert, make_ca, make_leaf
from unprovision.engine.core import Engine
from unprovision.group.inprocess import GroupWork

OCCURRED_AT = "2025-01-31T12:00:00Z"


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Device:
    """What a device holds: its registration ID and its secret (SAS key) or its certificate chain."""

    registration_id: str
    key: str | None = None
    leaf: IssuedCert | None = None
    chain: tuple[IssuedCert, ...] = ()

    def credentials(self, emu: Any) -> dict[str, str]:
        if self.leaf is not None:
            return {"x-emulator-client-cert": chain_header(self.leaf, *self.chain)}
        assert self.key is not None
        return device_sas(emu, self.registration_id, self.key)


def sdk(emu: Any) -> ProvisioningServiceClient:
    return ProvisioningServiceClient.create_from_connection_string(emu.dps_connection_string)


def hub_hosts(emu: Any) -> list[str]:
    return [hub["hostName"] for hub in emu.hubs]


def symmetric(key: str) -> AttestationMechanism:
    attestation = SymmetricKeyAttestation(primary_key=key, secondary_key=new_key())
    return AttestationMechanism(type="symmetricKey", symmetric_key=attestation)


# ---- building -------------------------------------------------------------------------------------------


def individual_device(emu: Any, reg_id: str, *, hub: int = 0) -> Device:
    """A symmetric-key individual enrollment on hub ``hub``, and the device registered through it."""
    key = new_key()
    sdk(emu).create_or_update(IndividualEnrollment.create(reg_id, symmetric(key),
                                                          iot_hub_host_name=hub_hosts(emu)[hub]))
    device = Device(reg_id, key=key)
    register(emu, device)
    return device


def symmetric_group(emu: Any, group_id: str, reg_ids: list[str]) -> list[Device]:
    """A symmetric-key group hashed over every hub, and its devices registered with derived keys."""
    group_key = new_key()
    sdk(emu).create_or_update(EnrollmentGroup.create(
        group_id, symmetric(group_key), allocation_policy="hashed", iot_hubs=hub_hosts(emu)))
    devices = [Device(r, key=sas.derive_device_key(group_key, r)) for r in reg_ids]
    for device in devices:
        register(emu, device)
    return devices


def x509_group(emu: Any, group_id: str, reg_ids: list[str]) -> tuple[IssuedCert, list[Device]]:
    """An X.509 group signed by a fresh root (static on hub 0), and its devices with CN = registration ID."""
    root = make_ca(f"{group_id} root")
    sdk(emu).create_or_update(EnrollmentGroup.create(
        group_id, AttestationMechanism.create_with_x509_signing_certs(root.pem),
        iot_hub_host_name=hub_hosts(emu)[0]))
    devices = [Device(r, leaf=make_leaf(r, root)) for r in reg_ids]
    for device in devices:
        register(emu, device)
    return root, devices


def seed_large_group(emu: Any, group_id: str, count: int, *, seed: int | None = 7) -> dict[str, int]:
    """An X.509 group (fresh root) with ``count`` registrations spread over every hub — pseudo-randomly, or
    round robin when ``seed`` is None — each with its CA-authenticated hub identity, seeded through the
    admin API (no HTTP per device). Returns devices per hub host name."""
    hosts = hub_hosts(emu)
    rng = random.Random(seed) if seed is not None else None
    root = make_ca(f"{group_id} root")
    sdk(emu).create_or_update(EnrollmentGroup.create(
        group_id, AttestationMechanism.create_with_x509_signing_certs(root.pem),
        allocation_policy="hashed", iot_hubs=hosts))
    records: list[dict[str, Any]] = []
    devices: dict[str, list[dict[str, Any]]] = {hub["name"]: [] for hub in emu.hubs}
    per_hub = dict.fromkeys(hosts, 0)
    for n in range(count):
        i = rng.randrange(len(hosts)) if rng else n % len(hosts)
        reg_id = f"{group_id}-d{n:05d}"
        records.append({"registrationId": reg_id, "assignedHub": hosts[i], "deviceId": reg_id,
                        "status": "assigned", "enrollmentGroupId": group_id})
        devices[emu.hubs[i]["name"]].append({"deviceId": reg_id, "status": "enabled",
                                             "authentication": {"type": "certificateAuthority"}})
        per_hub[hosts[i]] += 1
    emu.admin("POST", "/seed", json={"registrations": records, "devices": devices})
    return per_hub


def hub_statuses(emu: Any, index: int) -> dict[str, str]:
    """Every identity of hub ``index`` → its status (admin dump: one call, no registry budget spent)."""
    hub = emu.admin("GET", "/state")["hubs"][index]
    return {d["device_id"]: d["status"] for d in hub["devices"]}


# ---- what a device can still do ---------------------------------------------------------------------------


def register(emu: Any, device: Device) -> dict[str, Any]:
    """Register; asserts the emulator assigned it (for building fleets)."""
    response = register_device(emu, device.registration_id, device.credentials(emu))
    body = response.json()
    assert response.status_code == 200, (response.status_code, body)
    assert body["status"] == "assigned", body
    return dict(body["registrationState"])


def can_register(emu: Any, device: Device) -> bool:
    """A registration attempt ends in ``assigned`` (refused: 401, or 200 with status ``disabled``)."""
    response = register_device(emu, device.registration_id, device.credentials(emu))
    return response.status_code == 200 and response.json().get("status") == "assigned"


def can_send(emu: Any, device: Device, hub_host: str | None = None) -> bool:
    """Device-to-cloud on the hub DPS assigned it (read from the DPS record unless ``hub_host`` is given)."""
    host = hub_host or assigned_hub(emu, device.registration_id)
    index = hub_hosts(emu).index(host)
    chain = "".join(c.pem for c in (device.leaf, *device.chain)) if device.leaf else None
    response = emu.send_telemetry(device.registration_id, index=index, key=device.key, cert_chain_pem=chain)
    assert response.status_code in (204, 401), response.status_code
    return bool(response.status_code == 204)


def assigned_hub(emu: Any, reg_id: str) -> str:
    state = sdk(emu).get_registration_state(reg_id)
    return str(state.assigned_hub)


def hub_status(emu: Any, device_id: str, hub_host: str) -> str | None:
    """``enabled``/``disabled`` as the hub's service API reports it, or None when the identity is gone."""
    try:
        return str(emu.registry_manager(hub_hosts(emu).index(hub_host)).get_device(device_id).status)
    except HttpOperationError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return None
        raise


def enrollment_status(emu: Any, reg_id: str) -> str | None:
    """The individual enrollment's ``provisioningStatus`` through the real SDK; None when there is none."""
    try:
        return str(sdk(emu).get_individual_enrollment(reg_id).provisioning_status)
    except Exception as exc:  # the SDK raises its own ProvisioningServiceError, which carries no status
        if "404" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


# ---- engine ports and events ---------------------------------------------------------------------------


def fast_retrier(attempts: int = 5) -> Retrier:
    """Real retries with short real sleeps (the emulator's Retry-After is honoured up to 1 s)."""
    return Retrier(RetryPolicy(attempts=attempts, timeout=30, max_retry_after=2.0, wait_initial=0.05),
                   rng=random.Random(3))


def engine_ports(emu: Any, retrier: Retrier | None = None) -> tuple[DpsProvisioningService, HubRegistries]:
    """The production adapters over the emulator, connected by connection string."""
    retry = retrier or fast_retrier()
    dps = DpsProvisioningService.from_connection_string(emu.dps_connection_string, retrier=retry)
    registries = HubRegistries({h["hostName"]: h["connectionString"] for h in emu.hubs}, retrier=retry)
    return dps, registries


def engine(emu: Any, journal: Journal, *, retrier: Retrier | None = None, dps: Any = None,
           group_work: GroupWork | None = None, **options: Any) -> Engine:
    """The product's engine over the production adapters (``engine_ports``), in-process group work (no work
    queue) with the default policy; ``dps`` replaces the DPS adapter (e.g. a counting wrapper), ``options``
    are further ``Engine`` fields (``group_cache``, ...)."""
    ports_dps, registries = engine_ports(emu, retrier)
    return Engine(dps=dps if dps is not None else ports_dps, registries=registries, journal=journal,
                  policy=DEFAULT_POLICY, group_work=group_work if group_work is not None else GroupWork(),
                  **options)


def event(event_id: str, type_: str, *, reg_id: str | None = None, group_id: str | None = None,
          **extra: Any) -> LifecycleEvent:
    body: dict[str, Any] = {"eventId": event_id, "type": type_, "occurredAt": OCCURRED_AT,
                            "source": "engine-integration", **extra}
    if reg_id is not None:
        body["registrationId"] = reg_id
    if group_id is not None:
        body["enrollmentGroupId"] = group_id
    return parse_event(body)


def counters(emu: Any) -> dict[str, Any]:
    return dict(emu.admin("GET", "/counters")["calls"])


def mutating_calls(emu: Any) -> int:
    """Answered PUT/DELETE/POST-to-/devices calls on every service (reads and queries excluded)."""
    total = 0
    for operations in counters(emu).values():
        for operation, by_status in operations.items():
            method, _, path = operation.partition(" ")
            bulk = method == "POST" and path.rstrip("/") == "/devices"
            write = bulk or method in ("PUT", "DELETE", "PATCH")
            if write and "/register" not in path:
                total += sum(by_status.values())
    return total


def create_container(blob_url: str, account: str, key_b64: str, name: str) -> None:
    """Deployment's job, done here as the app's wiring does it (``shared.adapters.blob_container``): an
    account SAS, since a service SAS for a container cannot create it. Created or already there (201/409);
    any other answer raises (``Permanent``/``Transient``)."""
    blob_container.create_container(blob_container.BlobAccount(blob_url.rstrip("/"), account, key_b64), name)
