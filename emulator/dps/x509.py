"""X.509 helpers for the DPS emulator: certificate info as DPS reports it, and chain matching.

Why a module of its own: enrollment storage needs ``X509CertificateInfo`` for responses, and device
registration needs signature checks along the chain the device presents (docs/azure-behaviour.md §1.1, D3).
Both stay pure (no I/O).

Not pinned by a documented source: the exact text format of ``subjectName``/``issuerName`` (we use the RFC
4514 string ``cryptography`` produces, e.g. ``CN=device-1``) and of timestamps (ISO 8601 UTC with ``Z``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


class CertificateError(ValueError):
    """An uploaded or presented certificate could not be parsed."""


def load_certificate(text: str) -> x509.Certificate:
    """Parse a PEM, or bare base64 DER as the SDK samples sometimes send; CertificateError otherwise."""
    data = text.strip()
    try:
        if "-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data.encode())
        return x509.load_der_x509_certificate(base64.b64decode(data, validate=False))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise CertificateError(f"certificate could not be parsed: {exc}") from exc


@lru_cache(maxsize=512)
def load_stored_certificate(pem: str) -> x509.Certificate:
    """``load_certificate`` memoised for stored PEMs (otherwise parsed on every registration)."""
    return load_certificate(pem)


def split_pem_chain(text: str) -> list[str]:
    """Split a concatenated PEM bundle into single PEM blocks, keeping their order (leaf first)."""
    marker = "-----END CERTIFICATE-----"
    blocks = []
    for part in text.split(marker):
        start = part.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(part[start:] + marker + "\n")
    return blocks


def _utc(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


def thumbprint_sha1(cert: x509.Certificate) -> str:
    """Upper-case hex SHA-1 of the DER, the form DPS and IoT Hub show as a thumbprint."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - thumbprints are SHA-1 by definition


def certificate_info(cert: x509.Certificate) -> dict[str, Any]:
    """The ``X509CertificateInfo`` object DPS returns in place of an uploaded certificate
    (docs/azure-behaviour.md §3.3)."""
    return {
        "subjectName": cert.subject.rfc4514_string(),
        "sha1Thumbprint": thumbprint_sha1(cert),
        "sha256Thumbprint": cert.fingerprint(hashes.SHA256()).hex().upper(),
        "issuerName": cert.issuer.rfc4514_string(),
        "notBeforeUtc": _utc(cert.not_valid_before_utc),
        "notAfterUtc": _utc(cert.not_valid_after_utc),
        "serialNumber": format(cert.serial_number, "X"),
        "version": cert.version.value + 1,
    }


def common_name(cert: x509.Certificate) -> str | None:
    """The subject CN (the registration ID of an X.509 device, D3), or None when absent."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s public key verifies ``child``'s signature and the names chain."""
    if child.issuer != issuer.subject:
        return False
    key = issuer.public_key()
    algorithm = child.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            child.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class PresentedChain:
    """A device's certificate chain, leaf first, parsed once per registration attempt."""

    certs: tuple[x509.Certificate, ...]
    thumbprints: tuple[str, ...]

    @classmethod
    def from_pems(cls, pems: list[str] | tuple[str, ...]) -> PresentedChain:
        certs: list[x509.Certificate] = []
        for pem in pems:
            certs.extend(load_certificate(block) for block in split_pem_chain(pem) or [pem])
        if not certs:
            raise CertificateError("no certificate presented")
        return cls(tuple(certs), tuple(thumbprint_sha1(c) for c in certs))

    @property
    def leaf(self) -> x509.Certificate:
        return self.certs[0]

    @cached_property
    def verified_prefix(self) -> int:
        """How many certificates, from the leaf, form an unbroken signature chain (at least 1)."""
        length = 1
        while length < len(self.certs) and signed_by(self.certs[length - 1], self.certs[length]):
            length += 1
        return length

    def depth_of(self, signer: x509.Certificate) -> int | None:
        """Position at which ``signer`` vouches for this chain, or None.

        Position i (i >= 1) when the device presented ``signer`` itself at index i with a verified chain
        below it; ``len(chain)`` when ``signer`` was not presented but signed the topmost presented
        certificate (a device need not send the certificate that DPS already holds). Lower = nearer the leaf,
        which is the group that decides (docs/azure-behaviour.md §1.1, D3).
        """
        verified = self.verified_prefix
        signer_tp = thumbprint_sha1(signer)
        for index in range(1, verified):
            if self.thumbprints[index] == signer_tp:
                return index
        if signer_tp not in self.thumbprints and signed_by(self.certs[verified - 1], signer):
            return verified
        return None
