"""The demo fleet: enrollments created through the real DPS service SDK, devices registered as devices.

``seed_fleet`` builds, in a running emulator: an X.509 root CA (group ``fleet-root``) and an intermediate CA
(group ``line-a``), a second intermediate without a group of its own (its devices fall back to
``fleet-root``), a symmetric-key group ``sensors-sk``, and individual TPM, X.509 (self-signed) and
symmetric-key enrollments. Every device then registers through the DPS device endpoint (202 + polling),
which creates its identity in one of the two hubs: through Microsoft's Node.js device SDK
(:mod:`devhost.node_device`) when the emulator runs in standard-ports mode and the SDK is installed, else —
and always for the TPM device, whose attestation the emulator replaces by a stand-in header — through the
project's :mod:`devhost.device_client` (``emulator/README.md``, "Device SDKs"). IDs follow
``samples/events`` (``sensor-a-001`` in ``line-a``, ``gateway-tpm-004`` …).

Everything a device holds is kept under ``<state>/fleet`` (mode 0700 directory, 0600 files): the CA and
leaf private keys, and ``fleet.json`` with symmetric keys and TPM endorsement keys. These are local demo
credentials for the emulator only; they are never printed.

The live probe of the fleet (DPS and hub state, can each device still register and send?) and its table are
in :mod:`devhost.fleet_probe`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from provisioningserviceclient import ProvisioningServiceClient
from provisioningserviceclient.models import AttestationMechanism, EnrollmentGroup, IndividualEnrollment

from devhost import node_device
from devhost.device_client import (
    DeviceClient,
    DeviceClientError,
    DeviceCredentials,
    DpsEndpoint,
    derive_group_device_key,
)

FLEET_DIR = "fleet"
PARALLEL_REGISTRATIONS = 4  # devices registering at once while seeding (each its own process or session)
FLEET_FILE = "fleet.json"
_CA_CN = {"root": "Contoso Fleet Root", "line-a": "Contoso Line A", "line-b": "Contoso Line B"}
_VALID = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2049, 12, 31, tzinfo=dt.UTC))

# (registration ID, kind, group or target hub index, enrollment path shown in tables)
_DEVICES: tuple[tuple[str, str, str, str], ...] = (
    ("sensor-a-001", "x509-group", "line-a", "group line-a (X.509 intermediate)"),
    ("sensor-b-002", "x509-group", "line-b", "group fleet-root (via Line B CA)"),
    ("thermo-sk-003", "sas-group", "sensors-sk", "group sensors-sk (symmetric key)"),
    ("gateway-tpm-004", "tpm", "1", "individual TPM"),
    ("camera-x509-005", "x509-individual", "0", "individual X.509"),
    ("kiosk-sk-006", "sas-individual", "1", "individual symmetric key"),
    ("tracker-007", "sas-individual", "1", "individual symmetric key"),
    ("pump-008", "x509-group", "line-a", "group line-a (X.509 intermediate)"),
    ("sensor-a-009", "x509-group", "line-a", "group line-a (X.509 intermediate)"),
    ("sensor-r-010", "x509-group", "root", "group fleet-root (X.509 root)"),
    ("thermo-sk-011", "sas-group", "sensors-sk", "group sensors-sk (symmetric key)"),
    ("kiosk-sk-012", "sas-individual", "0", "individual symmetric key"),
)


@dataclass(frozen=True, repr=False)
class FleetDevice:
    """One demo device and the credentials it holds (``repr`` shows no secret)."""

    registration_id: str
    kind: str
    path: str
    group_id: str | None = None
    symmetric_key: str | None = None
    chain_file: str | None = None  # PEM chain, leaf first, relative to the fleet dir
    tpm_endorsement_key: str | None = None
    hub: str | None = None  # host name the device was last assigned to

    def __repr__(self) -> str:
        return f"FleetDevice({self.registration_id!r}, {self.kind}, hub={self.hub!r})"

    def credentials(self, fleet_dir: Path) -> DeviceCredentials:
        chain = (fleet_dir / self.chain_file).read_text(encoding="ascii") if self.chain_file else None
        cert_file = str(fleet_dir / self.chain_file) if self.chain_file else None
        key_file = cert_file[: -len(".pem")] + ".key.pem" if cert_file else None  # written by _issue
        if key_file and not Path(key_file).exists():
            key_file = None  # chain only: the emulator's certificate header stands in for mutual TLS
        return DeviceCredentials(self.registration_id, self.symmetric_key, chain, self.tpm_endorsement_key,
                                 cert_file=cert_file, key_file=key_file)

    def sdk_device(self, fleet_dir: Path) -> node_device.SdkDevice:
        """The same credentials as Microsoft's Node SDK takes them (PEM files for X.509)."""
        creds = self.credentials(fleet_dir)
        return node_device.SdkDevice(self.registration_id, symmetric_key=creds.symmetric_key,
                                     cert_file=creds.cert_file, key_file=creds.key_file)


# -- certificates ---------------------------------------------------------------------------------

def _cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, Any] | None,
          *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_cert, signer_key = issuer if issuer else (None, key)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(signer_cert.subject if signer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(_VALID[0]).not_valid_after(_VALID[1])
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if not ca:
        usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
        builder = builder.add_extension(usage, critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _issue(fleet_dir: Path, cn: str, issuer: tuple[x509.Certificate, Any] | None, *, ca: bool,
           chain_above: str = "") -> tuple[x509.Certificate, Any]:
    """New EC key + certificate; writes ``<cn>.pem`` (chain, leaf first) and ``<cn>.key.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(cn, key, issuer, ca=ca)
    stem = cn.lower().replace(" ", "-")
    (fleet_dir / f"{stem}.pem").write_text(_pem(cert) + chain_above, encoding="ascii")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    _write_secret(fleet_dir / f"{stem}.key.pem", key_pem)
    return cert, key


# -- seeding --------------------------------------------------------------------------------------

def _hub_hosts(config: dict[str, Any]) -> list[str]:
    return [hub["hostName"] for hub in config["hubs"]]


def _create_groups(psc: ProvisioningServiceClient, cas: dict[str, x509.Certificate],
                   hubs: list[str]) -> str:
    """The two X.509 groups and the symmetric-key group (hashed over both hubs); returns the group key."""
    for group_id, ca in (("fleet-root", cas["root"]), ("line-a", cas["line-a"])):
        attestation = AttestationMechanism.create_with_x509_signing_certs(_pem(ca))
        psc.create_or_update(EnrollmentGroup.create(group_id, attestation, allocation_policy="hashed",
                                                    iot_hubs=hubs))
    group = psc.create_or_update(EnrollmentGroup.create(
        "sensors-sk", AttestationMechanism(type="symmetricKey"), allocation_policy="hashed", iot_hubs=hubs))
    return str(group.attestation.symmetric_key.primary_key)


def _individual(psc: ProvisioningServiceClient, reg_id: str, attestation: Any, hub: str) -> Any:
    return psc.create_or_update(IndividualEnrollment.create(
        reg_id, attestation, iot_hub_host_name=hub, allocation_policy="static", iot_hubs=[hub]))


def _enroll_device(psc: ProvisioningServiceClient, fleet_dir: Path, spec: tuple[str, str, str, str], *,
                   cas: dict[str, tuple[x509.Certificate, Any]], group_key: str,
                   hubs: list[str]) -> FleetDevice:
    reg_id, kind, where, path = spec
    if kind == "x509-group":
        issuer_name = {"line-a": "line-a", "line-b": "line-b", "root": "root"}[where]
        above = "" if where == "root" else (fleet_dir / f"{_CA_CN[issuer_name].lower().replace(' ', '-')}.pem"
                                            ).read_text(encoding="ascii")
        _issue(fleet_dir, reg_id, cas[issuer_name], ca=False, chain_above=above)
        group = "fleet-root" if where in ("root", "line-b") else "line-a"
        return FleetDevice(reg_id, kind, path, group_id=group, chain_file=f"{reg_id}.pem")
    if kind == "sas-group":
        return FleetDevice(reg_id, kind, path, group_id=where,
                           symmetric_key=derive_group_device_key(group_key, reg_id))
    hub = hubs[int(where) % len(hubs)]
    if kind == "x509-individual":
        cert, _ = _issue(fleet_dir, reg_id, None, ca=False)
        _individual(psc, reg_id, AttestationMechanism.create_with_x509_client_certs(_pem(cert)), hub)
        return FleetDevice(reg_id, kind, path, chain_file=f"{reg_id}.pem")
    if kind == "tpm":
        ek = "AToAAQ" + secrets.token_urlsafe(24)  # stand-in endorsement key (the emulator compares strings)
        _individual(psc, reg_id, AttestationMechanism.create_with_tpm(ek), hub)
        return FleetDevice(reg_id, kind, path, tpm_endorsement_key=ek)
    made = _individual(psc, reg_id, AttestationMechanism(type="symmetricKey"), hub)
    return FleetDevice(reg_id, kind, path, symmetric_key=str(made.attestation.symmetric_key.primary_key))


def _register(config: dict[str, Any], endpoint: DpsEndpoint, fleet_dir: Path, device: FleetDevice, *,
              use_node: bool) -> str | None:
    """Register one device as a device does; returns its assigned hub (raises when it is refused)."""
    if use_node and device.kind != "tpm":
        outcome = node_device.run(config, device.sdk_device(fleet_dir), send=False)
        if outcome.registered and outcome.registration is not None:
            return str(outcome.registration["assignedHub"])
        error = outcome.registration_error or {}
        status = f"{error.get('name')} {error.get('statusCode') or error.get('resultStatus') or ''}".strip()
    else:
        result = DeviceClient(endpoint, device.credentials(fleet_dir)).register()
        if result.assigned:
            return result.assigned_hub
        status = result.status
    raise DeviceClientError(f"demo device {device.registration_id} could not register: {status}")


def seed_fleet(config: dict[str, Any], state_dir: Path, *, device_sdk: str = "auto") -> list[FleetDevice]:
    """Create the CAs, enrollments and devices; register every device; write ``fleet.json`` last (marker).

    ``device_sdk``: which device code registers the devices (:func:`devhost.node_device.pick`)."""
    fleet_dir = state_dir / FLEET_DIR
    fleet_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    psc = ProvisioningServiceClient.create_from_connection_string(config["dps"]["connectionString"])
    root = _issue(fleet_dir, _CA_CN["root"], None, ca=True)
    cas = {"root": root, "line-a": _issue(fleet_dir, _CA_CN["line-a"], root, ca=True),
           "line-b": _issue(fleet_dir, _CA_CN["line-b"], root, ca=True)}
    hubs = _hub_hosts(config)
    group_key = _create_groups(psc, {k: v[0] for k, v in cas.items()}, hubs)
    endpoint = DpsEndpoint.from_emulator_config(config)
    use_node = node_device.pick(config, device_sdk) == "node"
    enrolled = [_enroll_device(psc, fleet_dir, spec, cas=cas, group_key=group_key, hubs=hubs)
                for spec in _DEVICES]
    with ThreadPoolExecutor(max_workers=PARALLEL_REGISTRATIONS) as pool:  # devices register independently
        hubs_of = list(pool.map(lambda d: _register(config, endpoint, fleet_dir, d, use_node=use_node),
                                enrolled))
    devices = [FleetDevice(**{**asdict(device), "hub": hub}) for device, hub in zip(enrolled, hubs_of,
                                                                                    strict=True)]
    save_fleet(state_dir, devices)
    return devices


def save_fleet(state_dir: Path, devices: list[FleetDevice]) -> None:
    _write_secret(state_dir / FLEET_DIR / FLEET_FILE, json.dumps([asdict(d) for d in devices], indent=2))


def load_fleet(state_dir: Path) -> list[FleetDevice] | None:
    """The seeded fleet, or None when this state dir has not been seeded yet."""
    path = state_dir / FLEET_DIR / FLEET_FILE
    if not path.is_file():
        return None
    return [FleetDevice(**item) for item in json.loads(path.read_text(encoding="utf-8"))]


def leaf_pem(state_dir: Path, registration_id: str) -> str:
    """The device's leaf certificate alone (what a ``lost`` event may carry)."""
    chain = (state_dir / FLEET_DIR / f"{registration_id}.pem").read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----\n"
    return chain.split(end, 1)[0] + end
