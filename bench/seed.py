"""Seed a fleet through the emulator's admin API: one enrollment group, N registration records spread
round-robin over the hubs, and N hub identities. ``x509`` (the default): an X.509 group and
``certificateAuthority`` identities, as DPS creates them for X.509 group devices. ``symmetricKey``: a
symmetric-key group and ``sas`` identities (the emulator generates their keys), as DPS creates them for
symmetric-key group devices — the identities whose keys a bulk disable must read first (docs/engine.md).

Seeding is chunked so a 100k fleet never needs one giant JSON body in either process.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.emu import EmulatorProcess

GROUP_ID = "bench-fleet"
CHUNK = 5_000
ATTESTATIONS = ("x509", "symmetricKey")


def device_id(index: int) -> str:
    return f"bench-dev-{index:07d}"


def signing_certificate_pem() -> str:
    """A throwaway self-signed CA certificate for the group (nothing ever signs with it here)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench fleet CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _group(attestation: str) -> dict[str, object]:
    if attestation == "symmetricKey":
        mechanism: dict[str, object] = {
            "type": "symmetricKey", "symmetricKey": {"primaryKey": _key(), "secondaryKey": _key()}}
    else:
        mechanism = {
            "type": "x509",
            "x509": {"signingCertificates": {"primary": {"certificate": signing_certificate_pem()}}},
        }
    return {"enrollmentGroupId": GROUP_ID, "provisioningStatus": "enabled", "attestation": mechanism}


def _authentication(attestation: str) -> dict[str, object]:
    return {"type": "sas"} if attestation == "symmetricKey" else {"type": "certificateAuthority"}


def _chunks(total: int) -> Iterator[range]:
    for start in range(0, total, CHUNK):
        yield range(start, min(total, start + CHUNK))


def seed_fleet(emu: EmulatorProcess, devices: int, attestation: str = "x509") -> dict[str, int]:
    """Group + ``devices`` registrations + identities; returns devices seeded per hub name."""
    if attestation not in ATTESTATIONS:
        raise ValueError(f"attestation must be one of {ATTESTATIONS}, got {attestation!r}")
    hubs = emu.hub_names
    emu.admin("POST", "seed", {"enrollments": [_group(attestation)]})
    per_hub = dict.fromkeys(hubs, 0)
    for chunk in _chunks(devices):
        registrations = []
        identities: dict[str, list[dict[str, object]]] = {hub: [] for hub in hubs}
        for i in chunk:
            hub = hubs[i % len(hubs)]
            registrations.append(
                {
                    "registrationId": device_id(i),
                    "deviceId": device_id(i),
                    "assignedHub": hub,
                    "enrollmentGroupId": GROUP_ID,
                }
            )
            identities[hub].append(
                {
                    "deviceId": device_id(i),
                    "status": "enabled",
                    "authentication": _authentication(attestation),
                }
            )
            per_hub[hub] += 1
        emu.admin("POST", "seed", {"registrations": registrations, "devices": identities})
    return per_hub
