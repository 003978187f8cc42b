"""Certificate-chain analysis: which enrollment groups cover a device, and which groups sit above a group.

DPS walks a device's chain from the leaf toward the root and the first enrollment entry found decides
(docs/azure-behaviour.md §1.1, §1.2). Revocation needs two answers from that rule:

* would deleting an individual enrollment (or a group) let the device fall back to an enabled group?
* which group is nearest the leaf (the one the device came through)?

The chain is rebuilt from the certificates we have: the event's PEM (leaf first, optional intermediates after
it) and the groups' signing certificates. A link is proven when the issuer's public key verifies the child's
signature (RSA and EC; Ed25519/Ed448 too). Groups that DPS reports with certificate info only (no PEM) are
linked by subject/issuer name and the analysis says so in a warning; groups with ``x509CaReferences``
cannot be analysed and count as "may cover". Symmetric-key and TPM groups never cover an X.509 chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from shared.model import AttestationType, CertificateInfo, EnrollmentGroup, ProvisioningStatus

_MAX_DEPTH = 12  # DPS itself caps chains far lower; this only guards against loops in odd data
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


class CertificateError(ValueError):
    """The text is not a usable PEM certificate (a ValueError so validators turn it into a field error)."""


@dataclass(frozen=True)
class ParsedCert:
    """The parts of a certificate the analysis looks at; ``cert`` is kept for signature checks."""

    subject: str
    issuer: str
    common_name: str | None
    subject_key_id: str | None
    authority_key_id: str | None
    sha1: str
    sha256: str
    not_before: str
    not_after: str
    pem: str
    cert: x509.Certificate

    @property
    def self_issued(self) -> bool:
        return self.subject == self.issuer

    def info(self) -> CertificateInfo:
        """The certificate as DPS would describe it (used when the inventory file gives only a PEM)."""
        return CertificateInfo(
            subject=self.subject,
            issuer=self.issuer,
            sha1_thumbprint=self.sha1,
            sha256_thumbprint=self.sha256,
            not_before=self.not_before,
            not_after=self.not_after,
            pem=self.pem,
        )


def _key_id(cert: x509.Certificate, ext_type: type[x509.ExtensionType]) -> str | None:
    try:
        value = cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None
    digest = value.digest if isinstance(value, x509.SubjectKeyIdentifier) else None
    if isinstance(value, x509.AuthorityKeyIdentifier):
        digest = value.key_identifier
    return digest.hex() if digest else None


def _parse_one(cert: x509.Certificate) -> ParsedCert:
    from cryptography.hazmat.primitives.serialization import Encoding

    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cns[0].value) if cns else None
    return ParsedCert(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=common_name,
        subject_key_id=_key_id(cert, x509.SubjectKeyIdentifier),
        authority_key_id=_key_id(cert, x509.AuthorityKeyIdentifier),
        sha1=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - DPS reports SHA-1 thumbprints
        sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
        not_before=cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
        not_after=cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        pem=cert.public_bytes(Encoding.PEM).decode("ascii"),
        cert=cert,
    )


def parse_pem_chain(text: str) -> tuple[ParsedCert, ...]:
    """Every certificate in a PEM text, in order (leaf first by convention). Raises ``CertificateError``."""
    if _PEM_BEGIN not in text:
        raise CertificateError("is not a PEM certificate (no BEGIN CERTIFICATE block)")
    try:
        certs = x509.load_pem_x509_certificates(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CertificateError("is not a parseable PEM certificate") from exc
    return tuple(_parse_one(c) for c in certs)


def parse_pem(text: str) -> ParsedCert:
    """The first certificate of a PEM text."""
    return parse_pem_chain(text)[0]


def signed_by(child: ParsedCert, issuer: ParsedCert) -> bool:
    """True when the issuer's public key verifies the child's signature (names must match too)."""
    if child.issuer != issuer.subject:
        return False
    cert, key = child.cert, issuer.cert.public_key()
    hash_alg = cert.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and hash_alg is not None:
            params = cert.signature_algorithm_parameters
            pad = params if isinstance(params, padding.PSS) else padding.PKCS1v15()
            key.verify(cert.signature, cert.tbs_certificate_bytes, pad, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey) and hash_alg is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_alg))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class _Node:
    """A pool certificate: parsed when its PEM is known, else DPS's info; ``group`` when it signs one."""

    info: CertificateInfo
    parsed: ParsedCert | None
    group: EnrollmentGroup | None


@dataclass(frozen=True)
class ChainCoverage:
    """What the chain says: groups by distance from the start (nearest first) and what stays unknown."""

    levels: tuple[tuple[EnrollmentGroup, ...], ...] = ()
    uncertain: tuple[EnrollmentGroup, ...] = ()  # enabled x509CaReferences groups: may cover, cannot tell
    warnings: tuple[str, ...] = ()

    @property
    def groups(self) -> tuple[EnrollmentGroup, ...]:
        return tuple(g for level in self.levels for g in level)

    @property
    def nearest(self) -> EnrollmentGroup | None:
        """The group that decides for this chain under DPS's first-hit rule."""
        return self.levels[0][0] if self.levels else None

    @property
    def enabled(self) -> tuple[EnrollmentGroup, ...]:
        return tuple(g for g in self.groups if g.status is ProvisioningStatus.ENABLED)

    @property
    def may_admit(self) -> bool:
        """Conservative: an enabled group anywhere in the chain, or one we cannot analyse."""
        return bool(self.enabled or self.uncertain)


def _pool(groups: Sequence[EnrollmentGroup], extra: Sequence[ParsedCert]) -> list[_Node]:
    nodes = [_Node(p.info(), p, None) for p in extra]
    for group in groups:
        if group.attestation is not AttestationType.X509:
            continue
        for info in group.signing_certificates:
            parsed = parse_pem(info.pem) if info.pem else None
            nodes.append(_Node(parsed.info() if parsed else info, parsed, group))
    return nodes


def _issues(parent: _Node, child: _Node) -> tuple[bool, bool]:
    """(links, by_name_only): whether ``parent`` issued ``child``, and whether only names prove it."""
    if parent.parsed is not None and child.parsed is not None:
        return signed_by(child.parsed, parent.parsed), False
    return _names_equal(child.info.issuer, parent.info.subject), True


def _names_equal(a: str, b: str) -> bool:
    """DPS and cryptography may order or space RDNs differently; compare the set of normalised parts."""

    def parts(name: str) -> frozenset[str]:
        return frozenset(p.strip().lower() for p in name.replace(";", ",").split(",") if p.strip())

    return parts(a) == parts(b)


def _same_cert(a: _Node, b: _Node) -> bool:
    if a.parsed is not None and b.parsed is not None:
        return a.parsed.sha256 == b.parsed.sha256
    thumbs = (a.info.sha256_thumbprint, b.info.sha256_thumbprint)
    if all(thumbs):
        return str(thumbs[0]).upper() == str(thumbs[1]).upper()
    return _names_equal(a.info.subject, b.info.subject) and _names_equal(a.info.issuer, b.info.issuer)


def _uncertain(
    groups: Sequence[EnrollmentGroup], exclude: EnrollmentGroup | None
) -> tuple[EnrollmentGroup, ...]:
    return tuple(
        g
        for g in groups
        if g.attestation is AttestationType.X509_CA_REFERENCES
        and g.status is ProvisioningStatus.ENABLED
        and g != exclude
    )


def _walk(start: _Node, pool: list[_Node], skip_group: EnrollmentGroup | None) -> ChainCoverage:
    """Climb from ``start`` to the root, collecting at each level the groups whose signing cert sits there."""
    levels: list[tuple[EnrollmentGroup, ...]] = []
    warnings: list[str] = []
    current, seen = start, [start]
    for _ in range(_MAX_DEPTH):
        if current.parsed is not None and current.parsed.self_issued:
            break
        parents = [
            (n, by_name)
            for n in pool
            if not any(_same_cert(n, s) for s in seen)
            for links, by_name in [_issues(n, current)]
            if links
        ]
        if not parents:
            break
        level_nodes = [n for n, _ in parents]
        level = tuple(
            dict.fromkeys(n.group for n in level_nodes if n.group is not None and n.group != skip_group)
        )
        if level:
            levels.append(level)
        if any(by_name for _, by_name in parents):
            names = ", ".join(g.group_id for g in level) or "an intermediate"
            warnings.append(
                f"chain link to {names} matched by subject/issuer name only (no certificate body)"
            )
        current = next((n for n in level_nodes if n.parsed is not None), level_nodes[0])
        seen.extend(level_nodes)
    return ChainCoverage(levels=tuple(levels), warnings=tuple(warnings))


def _with_uncertain(
    cov: ChainCoverage, groups: Sequence[EnrollmentGroup], exclude: EnrollmentGroup | None
) -> ChainCoverage:
    unknown = _uncertain(groups, exclude)
    warnings = list(cov.warnings)
    if unknown:
        ids = ", ".join(g.group_id for g in unknown)
        warnings.append(
            f"group(s) {ids} use x509CaReferences and cannot be analysed; assumed to cover the chain"
        )
    return ChainCoverage(levels=cov.levels, uncertain=unknown, warnings=tuple(warnings))


def device_coverage(
    leaf_chain: Sequence[ParsedCert] | CertificateInfo, groups: Sequence[EnrollmentGroup]
) -> ChainCoverage:
    """Groups covering a device, nearest the leaf first.

    ``leaf_chain`` is the device's PEM chain (leaf first) or, when DPS gave no body, the leaf's info.
    """
    if isinstance(leaf_chain, CertificateInfo):
        parsed = parse_pem(leaf_chain.pem) if leaf_chain.pem else None
        start = _Node(parsed.info() if parsed else leaf_chain, parsed, None)
        pool = _pool(groups, ())
    else:
        start = _Node(leaf_chain[0].info(), leaf_chain[0], None)
        pool = _pool(groups, leaf_chain[1:])
    return _with_uncertain(_walk(start, pool, None), groups, None)


def groups_above(group: EnrollmentGroup, groups: Sequence[EnrollmentGroup]) -> ChainCoverage:
    """Groups higher in the chain of ``group``'s signing certificate(s): where its devices would fall back to.

    Only meaningful for X.509 signing-certificate groups; for others the result is empty (symmetric-key groups
    have no chain) and a ``x509CaReferences`` group is reported as uncertain about everything else.
    """
    if group.attestation is AttestationType.X509_CA_REFERENCES:
        others = tuple(
            g
            for g in groups
            if g != group
            and g.status is ProvisioningStatus.ENABLED
            and g.attestation in (AttestationType.X509, AttestationType.X509_CA_REFERENCES)
        )
        note = (f"group {group.group_id} uses x509CaReferences; its chain cannot be analysed",)
        return ChainCoverage(uncertain=others, warnings=note if others else ())
    if group.attestation is not AttestationType.X509:
        return ChainCoverage()
    pool = _pool(groups, ())
    levels: list[tuple[EnrollmentGroup, ...]] = []
    warnings: list[str] = []
    for start in (n for n in pool if n.group == group):
        cov = _walk(start, pool, group)
        levels.extend(level for level in cov.levels if level not in levels)
        warnings.extend(w for w in cov.warnings if w not in warnings)
    return _with_uncertain(ChainCoverage(levels=tuple(levels), warnings=tuple(warnings)), groups, group)
