"""Test certificates generated on the spot with ``cryptography``: roots, intermediates and device leaves.

    root = make_ca("Fleet Root")
    inter = make_intermediate("Fleet Intermediate", root)
    leaf = make_leaf("device-001", inter)
    leaf.pem, leaf.key_pem, leaf.cert
    leaf.chain_pem()  # the leaf, then its issuers without the root

EC P-256 keys by default (fast); ``key_type="rsa"`` gives RSA-2048.
Never downloaded, never reused across runs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_VALID_FROM = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
_VALID_TO = dt.datetime(2049, 12, 31, tzinfo=dt.UTC)


@dataclass(frozen=True)
class IssuedCert:
    """A certificate, its private key, and the issuer it was made with (None for a root)."""

    cert: x509.Certificate
    key: PrivateKey
    parent: IssuedCert | None = None

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")

    @property
    def cn(self) -> str:
        return str(self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    def chain_pem(self) -> str:
        """This certificate and its issuers up to, not including, the root (what a device presents)."""
        parts, node = [self.pem], self.parent
        while node is not None and node.parent is not None:
            parts.append(node.pem)
            node = node.parent
        return "".join(parts)


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _build(
    cn: str, key: PrivateKey, issuer: IssuedCert | None, *, ca: bool, path_length: int | None
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else name
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_VALID_FROM)
        .not_valid_after(_VALID_TO)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(signer_key, hashes.SHA256())


def make_ca(cn: str, key_type: KeyType = "ec") -> IssuedCert:
    """A self-signed root CA."""
    key = _new_key(key_type)
    return IssuedCert(_build(cn, key, None, ca=True, path_length=None), key)


def make_intermediate(cn: str, parent: IssuedCert, key_type: KeyType = "ec") -> IssuedCert:
    """An intermediate CA signed by ``parent``."""
    key = _new_key(key_type)
    return IssuedCert(_build(cn, key, parent, ca=True, path_length=None), key, parent)


def make_leaf(cn: str, parent: IssuedCert, key_type: KeyType = "ec") -> IssuedCert:
    """A device (end-entity) certificate signed by ``parent``; its CN is the DPS registration ID."""
    key = _new_key(key_type)
    return IssuedCert(_build(cn, key, parent, ca=False, path_length=None), key, parent)


def make_self_signed_leaf(cn: str, key_type: KeyType = "ec") -> IssuedCert:
    """A self-signed device certificate (X.509 individual enrollments without a CA)."""
    key = _new_key(key_type)
    return IssuedCert(_build(cn, key, None, ca=False, path_length=None), key)
