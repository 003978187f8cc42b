"""Which enrollment decides a device registration, and whether the device proved its identity.

Implements docs/azure-behaviour.md §1.1/§1.2: the individual enrollment keyed by registration ID first (even
when a group would cover the device); otherwise the X.509 chain walked from the leaf upward, the group nearest
the leaf deciding; otherwise symmetric-key groups by the derived-key SAS. A deciding entry that is disabled
refuses the device.

Refusals come in two kinds, both unambiguous to a device: ``UnauthenticatedError`` (no entry, or credentials
that do not verify against the deciding entry → HTTP 401) and a ``Decision`` with ``enabled=False`` (the
device proved its identity against a disabled entry → status ``disabled``). Deliberate choice, not pinned by
a documented source: a disabled entry whose attestation type differs from what the device presents (the
recipe of a disabled symmetric-key enrollment blocking an X.509 group device, §1.3) answers 401 — DPS cannot
authenticate the device against it.

Emulator stand-ins (documented in docs/emulator-dps.md): X.509 devices send their chain in
``x-emulator-client-cert`` (base64 of the PEM chain, leaf first) or over mutual TLS when the server passes
it on; TPM devices prove possession with ``x-emulator-tpm-ek`` equal to the enrollment's endorsement key (no
nonce challenge).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Any

from emulator import sas
from emulator.dps import errors, models
from emulator.dps.state import DpsState
from emulator.dps.x509 import (
    CertificateError,
    PresentedChain,
    common_name,
    load_stored_certificate,
    thumbprint_sha1,
)

CLIENT_CERT_HEADER = "x-emulator-client-cert"
TPM_HEADER = "x-emulator-tpm-ek"


class UnauthenticatedError(Exception):
    """The device could not be matched to an entry it proved possession for (→ 401)."""


@dataclass(frozen=True)
class Credentials:
    """What a device presented on one registration request."""

    authorization: str | None
    chain: PresentedChain | None
    tpm_ek: str | None


@dataclass(frozen=True)
class Decision:
    """The deciding entry and how the device authenticated against it."""

    doc: dict[str, Any]
    group_id: str | None
    attestation: str  # "symmetricKey" | "x509" | "tpm"
    enabled: bool
    device_key: tuple[str, str] | None = None  # (primary, secondary) SAS keys the device may use at the hub
    leaf_thumbprint: str | None = None


def read_credentials(headers: Any, tls_chain: tuple[str, ...]) -> Credentials:
    """Collect the SAS header, the certificate chain (TLS first, then the stand-in header) and the TPM EK."""
    pems = tls_chain
    encoded = headers.get(CLIENT_CERT_HEADER)
    if not pems and encoded:
        try:
            pems = (base64.b64decode(encoded, validate=False).decode("ascii"),)
        except (binascii.Error, ValueError) as exc:
            raise UnauthenticatedError(f"{CLIENT_CERT_HEADER} is not base64 PEM") from exc
    chain = None
    if pems:
        try:
            chain = PresentedChain.from_pems(pems)
        except CertificateError as exc:
            raise UnauthenticatedError(str(exc)) from exc
    return Credentials(headers.get("authorization"), chain, headers.get(TPM_HEADER))


def decide(state: DpsState, id_scope: str, reg_id: str, creds: Credentials) -> Decision:
    """Apply DPS's lookup order; raise Unauthenticated when nothing matches or credentials fail."""
    enrollment = state.enrollment_raw(reg_id)
    if enrollment is not None:
        return _individual(enrollment, id_scope, reg_id, creds)
    if creds.chain is not None:
        return _x509_group(state, reg_id, creds.chain)
    if creds.authorization:
        return _symmetric_group(state, id_scope, reg_id, creds.authorization)
    raise UnauthenticatedError("no credentials presented")


def _enabled(doc: dict[str, Any]) -> bool:
    return bool(doc.get("provisioningStatus", "enabled") == "enabled")


def _check_sas(header: str | None, id_scope: str, reg_id: str, keys: list[str]) -> None:
    """Device SAS: sr = "{idScope}/registrations/{registrationId}", skn = "registration" (D4, D10)."""
    try:
        token = sas.verify(header, resource=f"{id_scope}/registrations/{reg_id}", keys_for=lambda _t: keys)
    except sas.SasError as exc:
        raise UnauthenticatedError(str(exc)) from exc
    if token.skn not in (None, "registration"):
        raise UnauthenticatedError("device SAS must use skn=registration")


def _leaf_cn_matches(chain: PresentedChain, reg_id: str) -> None:
    if (common_name(chain.leaf) or "").lower() != reg_id.lower():
        raise UnauthenticatedError("the leaf certificate CN must equal the registration ID")


def _individual(doc: dict[str, Any], id_scope: str, reg_id: str, creds: Credentials) -> Decision:
    kind = doc["attestation"]["type"]
    if kind == "symmetricKey":
        keys = doc["attestation"]["symmetricKey"]
        _check_sas(creds.authorization, id_scope, reg_id, [keys["primaryKey"], keys["secondaryKey"]])
        return Decision(doc, None, kind, _enabled(doc), device_key=(keys["primaryKey"], keys["secondaryKey"]))
    if kind == "tpm":
        expected = doc["attestation"]["tpm"]["endorsementKey"]
        if not creds.tpm_ek or not hmac.compare_digest(creds.tpm_ek.encode(), expected.encode()):
            raise UnauthenticatedError("TPM endorsement key does not match")
        keys = (models.new_symmetric_key(), models.new_symmetric_key())
        return Decision(doc, None, kind, _enabled(doc), device_key=keys)
    if creds.chain is None:
        raise UnauthenticatedError("X.509 enrollment needs a client certificate")
    _leaf_cn_matches(creds.chain, reg_id)
    pems = models.certificates_of(doc["attestation"], "clientCertificates")
    if creds.chain.thumbprints[0] not in {thumbprint_sha1(load_stored_certificate(p)) for p in pems}:
        raise UnauthenticatedError("client certificate does not match the enrollment")
    return Decision(doc, None, kind, _enabled(doc), leaf_thumbprint=creds.chain.thumbprints[0])


def _x509_group(state: DpsState, reg_id: str, chain: PresentedChain) -> Decision:
    """The group whose signing certificate vouches for the chain nearest the leaf decides (D3)."""
    _leaf_cn_matches(chain, reg_id)
    best: tuple[int, dict[str, Any]] | None = None
    for group in state.groups_raw():
        for pem in models.certificates_of(group["attestation"], "signingCertificates"):
            depth = chain.depth_of(load_stored_certificate(pem))
            if depth is not None and (best is None or depth < best[0]):
                best = (depth, group)
    if best is None:
        raise UnauthenticatedError("no enrollment group covers the certificate chain")
    group = best[1]
    return Decision(group, group["enrollmentGroupId"], "x509", _enabled(group))


def _symmetric_group(state: DpsState, id_scope: str, reg_id: str, header: str) -> Decision:
    """Try each symmetric-key group's derived device keys (D4); the first that verifies decides."""
    for group in state.groups_raw():
        if group["attestation"]["type"] != "symmetricKey":
            continue
        keys = group["attestation"]["symmetricKey"]
        derived = (sas.derive_device_key(keys["primaryKey"], reg_id),
                   sas.derive_device_key(keys["secondaryKey"], reg_id))
        try:
            _check_sas(header, id_scope, reg_id, list(derived))
        except UnauthenticatedError:
            continue
        group_id = group["enrollmentGroupId"]
        return Decision(group, group_id, "symmetricKey", _enabled(group), device_key=derived)
    raise UnauthenticatedError("no enrollment matches the device's SAS token")


def hub_auth(decision: Decision) -> dict[str, Any]:
    """Hub identity authentication matching the attestation (sas / selfSigned / certificateAuthority)."""
    if decision.device_key is not None:
        primary, secondary = decision.device_key
        return {"type": "sas", "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary}}
    if decision.group_id is not None:
        return {"type": "certificateAuthority"}
    return {"type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": decision.leaf_thumbprint, "secondaryThumbprint": None}}


def unauthorized(reason: UnauthenticatedError) -> errors.ServiceError:
    """401 with the DPS error body; the reason is kept generic on the wire, as a real service would."""
    del reason
    return errors.unauthorized("Unauthorized")
