"""Inventory snapshot types: what the planner knows about a device, its enrollments and its hub identity.

Adapters build these from DPS and IoT Hub; the planner only reads them. All frozen, all plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ProvisioningStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class AttestationType(StrEnum):
    TPM = "tpm"
    X509 = "x509"
    SYMMETRIC_KEY = "symmetricKey"
    X509_CA_REFERENCES = "x509CaReferences"  # a group that names CA certificates uploaded to DPS


class HubDeviceStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


# Tag written into the initialTwin of every blocking enrollment this app creates, so that it is
# recognisable in DPS itself (portal, CLI, audit) and never mistaken for the device's own enrollment.
BLOCKING_MARKER_TAG = "unprovisionBlockedBy"


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate as DPS describes it; ``pem`` is present only when the body is known."""

    subject: str
    issuer: str
    sha1_thumbprint: str | None = None
    sha256_thumbprint: str | None = None
    not_before: str | None = None  # RFC 3339, as DPS reports it
    not_after: str | None = None
    pem: str | None = None


@dataclass(frozen=True)
class IndividualEnrollment:
    registration_id: str
    attestation: AttestationType
    status: ProvisioningStatus
    device_id: str | None = None
    etag: str | None = None
    # X.509 individual enrollments: the device's own (leaf) certificate.
    client_certificate: CertificateInfo | None = None
    # eventId of the event that created this enrollment to block a group member; None for the device's own.
    blocking_marker: str | None = None

    @property
    def is_blocking(self) -> bool:
        return self.blocking_marker is not None


@dataclass(frozen=True)
class EnrollmentGroup:
    group_id: str
    attestation: AttestationType
    status: ProvisioningStatus
    # X.509 signing-certificate groups: the primary (and optional secondary) signing certificate.
    signing_certificates: tuple[CertificateInfo, ...] = ()
    etag: str | None = None


@dataclass(frozen=True)
class RegistrationState:
    registration_id: str
    device_id: str | None
    assigned_hub: str | None
    status: str  # unassigned | assigning | assigned | failed | disabled
    etag: str | None = None
    # Known only when the reader could tell (group registration listing, chain analysis); None otherwise.
    enrollment_group_id: str | None = None


@dataclass(frozen=True)
class HubDevice:
    hub: str  # host name of the hub, as DPS reports it in assignedHub
    device_id: str
    status: HubDeviceStatus
    etag: str | None = None
    status_reason: str | None = None


# Key in ``InventorySnapshot.extra`` naming a hub whose identity was not read (during a storm the engine
# skips that read: the hub step then waits in the hub's set, docs/engine.md "Storms"); ``hub_device`` is
# None then without meaning "absent".
HUB_IDENTITY_NOT_READ = "hubIdentityNotRead"


@dataclass(frozen=True)
class InventorySnapshot:
    """Everything the planner may look at for one event. Absent means "does not exist" (not "unknown")."""

    registration: RegistrationState | None = None
    enrollment: IndividualEnrollment | None = None
    groups: tuple[EnrollmentGroup, ...] = ()
    hub_device: HubDevice | None = None  # absent, or not read: see HUB_IDENTITY_NOT_READ
    # Step kinds already applied by earlier events on this target, newest first; `found` consults it.
    history: tuple[PastRevocation, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PastRevocation:
    """What the journal says an earlier event did to this target (for undoing a `lost`)."""

    event_id: str
    event_type: str
    step_kinds: tuple[str, ...]
    # The event's journal status (``shared.lifecycle.EventStatus``): a revocation that failed part-way or is
    # still running counts for the steps it applied.
    status: str = "completed"
    # A ``found`` that lifted a theft (its plan's steps carry ``shared.revocation_found.LIFTS_PARAM``).
    forced: bool = False
