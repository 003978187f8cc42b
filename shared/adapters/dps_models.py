"""Mapping between provisioningserviceclient 1.2.0 models and ``shared.model`` types.

Why separate: the SDK models are loosely typed msrest objects (``initial_twin`` is a wrapper whose
``tags`` may be missing, certificate ``info`` blocks may come without the certificate body); all the
defensive reading lives here so ``dps.py`` only orchestrates calls.
"""

from __future__ import annotations

from typing import Any

from provisioningserviceclient.models import (
    AttestationMechanism,
    InitialTwin,
)
from provisioningserviceclient.models import (
    IndividualEnrollment as SdkEnrollment,
)

from shared.model import (
    BLOCKING_MARKER_TAG,
    AttestationType,
    CertificateInfo,
    EnrollmentGroup,
    IndividualEnrollment,
    ProvisioningStatus,
    RegistrationState,
)


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def certificate_info(with_info: Any) -> CertificateInfo | None:
    """``X509CertificateWithInfo`` → ``CertificateInfo``; None when the slot is empty."""
    if with_info is None:
        return None
    info = getattr(with_info, "info", None)
    pem = getattr(with_info, "certificate", None)
    if info is None:
        if pem is None:
            return None
        return CertificateInfo(subject="", issuer="", pem=pem)
    return CertificateInfo(
        subject=info.subject_name or "",
        issuer=info.issuer_name or "",
        sha1_thumbprint=info.sha1_thumbprint,
        sha256_thumbprint=info.sha256_thumbprint,
        not_before=_str_or_none(info.not_before_utc),
        not_after=_str_or_none(info.not_after_utc),
        pem=pem,
    )


def _certificates(pair: Any) -> tuple[CertificateInfo, ...]:
    if pair is None:
        return ()
    found = (certificate_info(pair.primary), certificate_info(getattr(pair, "secondary", None)))
    return tuple(c for c in found if c is not None)


def attestation_type(mechanism: Any) -> AttestationType:
    """The domain's attestation kind; X.509 groups naming uploaded CAs are told apart from signing certs."""
    kind = getattr(mechanism, "type", None)
    if kind == "x509":
        x509 = mechanism.x509
        if x509 is not None and x509.ca_references is not None and x509.signing_certificates is None:
            return AttestationType.X509_CA_REFERENCES
        return AttestationType.X509
    if kind == "tpm":
        return AttestationType.TPM
    if kind == "symmetricKey":
        return AttestationType.SYMMETRIC_KEY
    raise ValueError(f"unsupported attestation type {kind!r}")


def twin_tags(model: Any) -> dict[str, Any]:
    """The ``initialTwin.tags`` of an enrollment as a plain dict (empty when absent)."""
    twin = getattr(model, "initial_twin", None)
    if twin is None:
        return {}
    internal = twin._unwrap() if hasattr(twin, "_unwrap") else twin
    tags = getattr(internal, "tags", None)
    props = getattr(tags, "additional_properties", None) if tags is not None else None
    return dict(props or {})


def status(value: Any) -> ProvisioningStatus:
    return ProvisioningStatus(value or "enabled")


def enrollment(model: Any) -> IndividualEnrollment:
    x509 = getattr(model.attestation, "x509", None)
    client_certs = getattr(x509, "client_certificates", None) if x509 is not None else None
    marker = twin_tags(model).get(BLOCKING_MARKER_TAG)
    return IndividualEnrollment(
        registration_id=model.registration_id,
        attestation=attestation_type(model.attestation),
        status=status(model.provisioning_status),
        device_id=model.device_id,
        etag=model.etag,
        client_certificate=certificate_info(client_certs.primary) if client_certs is not None else None,
        blocking_marker=str(marker) if marker is not None else None,
    )


def group(model: Any) -> EnrollmentGroup:
    x509 = getattr(model.attestation, "x509", None)
    signing = getattr(x509, "signing_certificates", None) if x509 is not None else None
    return EnrollmentGroup(
        group_id=model.enrollment_group_id,
        attestation=attestation_type(model.attestation),
        status=status(model.provisioning_status),
        signing_certificates=_certificates(signing),
        etag=model.etag,
    )


def registration(model: Any, group_id: str | None = None) -> RegistrationState:
    return RegistrationState(
        registration_id=model.registration_id,
        device_id=model.device_id,
        assigned_hub=model.assigned_hub,
        status=model.status or "unassigned",
        etag=model.etag,
        enrollment_group_id=group_id,
    )


def blocking_enrollment(registration_id: str, *, certificate_pem: str | None, marker: str) -> Any:
    """A new disabled individual enrollment carrying ``marker`` in its initial-twin tags.

    X.509 with the device's certificate as primary client certificate when known, so DPS matches it
    before any group; otherwise symmetric key with the keys left for DPS to generate (nobody holds them,
    and the enrollment is disabled anyway): DPS looks individual enrollments up by registration ID first
    (docs/azure-behaviour.md §1.1), so either shadows the group.
    """
    if certificate_pem:
        mechanism = AttestationMechanism.create_with_x509_client_certs(certificate_pem)
    else:
        mechanism = AttestationMechanism(type="symmetricKey")
    return SdkEnrollment.create(
        registration_id,
        mechanism,
        initial_twin=InitialTwin.create(tags={BLOCKING_MARKER_TAG: marker}),
        provisioning_status="disabled",
    )
