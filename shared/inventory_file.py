"""The inventory file: a small fleet described in JSON, from which the snapshot of one event's target is cut.

Used by ``python -m unprovision plan`` (and by tests) instead of reading DPS and the hubs.
Format (camelCase)::

    {"groups":  [{"groupId", "attestation", "status",
                  "signingCertificates": [{"pem"} | {"subject", "issuer"}]}],
     "devices": [{"registration": {...}, "enrollment": {...}, "hubDevice": {...}}],
     "history": {"<registration or group ID>":
                 [{"eventId", "eventType", "stepKinds": [...]}]}}  # newest first

A certificate given as PEM has its subject, issuer and thumbprints derived from it; one given without PEM
is "info only", as DPS often reports it. Parsing is pure; problems come back as one ``Rejected`` listing each
field (e.g. ``devices.1.enrollment.status``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.certs import parse_pem
from shared.errors import FieldError, Rejected
from shared.events import LifecycleEvent
from shared.ids import normalise_registration_id, same_dps_id
from shared.model import (
    AttestationType,
    CertificateInfo,
    EnrollmentGroup,
    HubDevice,
    HubDeviceStatus,
    IndividualEnrollment,
    InventorySnapshot,
    PastRevocation,
    ProvisioningStatus,
    RegistrationState,
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Cert(_In):
    pem: str | None = None
    subject: str | None = None
    issuer: str | None = None
    sha1_thumbprint: str | None = Field(default=None, alias="sha1Thumbprint")
    sha256_thumbprint: str | None = Field(default=None, alias="sha256Thumbprint")

    @field_validator("pem")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        if value is not None:
            parse_pem(value)  # CertificateError is a ValueError: reported at this field
        return value

    @model_validator(mode="after")
    def _pem_or_names(self) -> _Cert:
        if self.pem is None and (self.subject is None or self.issuer is None):
            raise ValueError("give pem, or subject and issuer")
        return self

    def to_model(self) -> CertificateInfo:
        if self.pem is not None:
            return parse_pem(self.pem).info()
        return CertificateInfo(
            subject=str(self.subject),
            issuer=str(self.issuer),
            sha1_thumbprint=self.sha1_thumbprint,
            sha256_thumbprint=self.sha256_thumbprint,
        )


class _Group(_In):
    group_id: str = Field(alias="groupId", min_length=1)
    attestation: AttestationType
    status: ProvisioningStatus = ProvisioningStatus.ENABLED
    signing_certificates: tuple[_Cert, ...] = Field(default=(), alias="signingCertificates")


class _Registration(_In):
    registration_id: str = Field(alias="registrationId", min_length=1)
    device_id: str | None = Field(default=None, alias="deviceId")
    assigned_hub: str | None = Field(default=None, alias="assignedHub")
    status: str = "assigned"
    enrollment_group_id: str | None = Field(default=None, alias="enrollmentGroupId")


class _Enrollment(_In):
    registration_id: str = Field(alias="registrationId", min_length=1)
    attestation: AttestationType
    status: ProvisioningStatus = ProvisioningStatus.ENABLED
    device_id: str | None = Field(default=None, alias="deviceId")
    client_certificate: _Cert | None = Field(default=None, alias="clientCertificate")
    blocking_marker: str | None = Field(default=None, alias="blockingMarker")


class _HubDevice(_In):
    hub: str = Field(min_length=1)
    device_id: str = Field(alias="deviceId", min_length=1)
    status: HubDeviceStatus = HubDeviceStatus.ENABLED
    status_reason: str | None = Field(default=None, alias="statusReason")


class _Device(_In):
    registration: _Registration | None = None
    enrollment: _Enrollment | None = None
    hub_device: _HubDevice | None = Field(default=None, alias="hubDevice")


class _Past(_In):
    event_id: str = Field(alias="eventId", min_length=1)
    event_type: str = Field(alias="eventType", min_length=1)
    step_kinds: tuple[str, ...] = Field(default=(), alias="stepKinds")


class _Fleet(_In):
    groups: tuple[_Group, ...] = ()
    devices: tuple[_Device, ...] = ()
    history: dict[str, tuple[_Past, ...]] = {}


@dataclass(frozen=True)
class DeviceEntry:
    registration: RegistrationState | None
    enrollment: IndividualEnrollment | None
    hub_device: HubDevice | None

    def names(self, key: str) -> bool:
        """True when the entry is the device a registration ID (case-insensitive) or hub device ID names."""
        ids = [
            self.registration.registration_id if self.registration else None,
            self.enrollment.registration_id if self.enrollment else None,
        ]
        return any(same_dps_id(i, key) for i in ids) or (
            self.hub_device is not None and self.hub_device.device_id == key
        )


@dataclass(frozen=True)
class Fleet:
    groups: tuple[EnrollmentGroup, ...]
    devices: tuple[DeviceEntry, ...]
    history: Mapping[str, tuple[PastRevocation, ...]]  # keyed by normalised target ID

    def history_of(self, target: str) -> tuple[PastRevocation, ...]:
        return self.history.get(normalise_registration_id(target), ())


def _device(d: _Device) -> DeviceEntry:
    r, e, h = d.registration, d.enrollment, d.hub_device
    return DeviceEntry(
        registration=RegistrationState(
            r.registration_id,
            r.device_id,
            r.assigned_hub,
            r.status,
            enrollment_group_id=r.enrollment_group_id,
        )
        if r
        else None,
        enrollment=IndividualEnrollment(
            e.registration_id,
            e.attestation,
            e.status,
            device_id=e.device_id,
            client_certificate=e.client_certificate.to_model() if e.client_certificate else None,
            blocking_marker=e.blocking_marker,
        )
        if e
        else None,
        hub_device=HubDevice(h.hub, h.device_id, h.status, status_reason=h.status_reason) if h else None,
    )


def _to_fleet(raw: _Fleet) -> Fleet:
    groups = tuple(
        EnrollmentGroup(
            g.group_id, g.attestation, g.status, tuple(c.to_model() for c in g.signing_certificates)
        )
        for g in raw.groups
    )
    history = {
        normalise_registration_id(k): tuple(PastRevocation(p.event_id, p.event_type, p.step_kinds) for p in v)
        for k, v in raw.history.items()
    }
    return Fleet(groups=groups, devices=tuple(_device(d) for d in raw.devices), history=history)


def parse_inventory(body: str | bytes | Mapping[str, Any]) -> Fleet:
    """The fleet an inventory file (text or decoded mapping) describes; raises ``Rejected`` on any problem."""
    try:
        raw = json.loads(body) if isinstance(body, str | bytes) else body
    except ValueError:
        raise Rejected([FieldError("$", "not valid JSON")], "invalid inventory") from None
    try:
        return _to_fleet(_Fleet.model_validate(raw))
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]) or "$", str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()
        ]
        raise Rejected(errors, "invalid inventory") from None


def select_snapshot(fleet: Fleet, event: LifecycleEvent) -> InventorySnapshot:
    """The snapshot of the event's target: the device entry it names (if any), all groups, its history."""
    history = fleet.history_of(event.target)
    if event.is_group:
        return InventorySnapshot(groups=fleet.groups, history=history)
    entry = next((d for d in fleet.devices if d.names(event.target)), None)
    if entry is None:
        return InventorySnapshot(groups=fleet.groups, history=history)
    return InventorySnapshot(
        registration=entry.registration,
        enrollment=entry.enrollment,
        groups=fleet.groups,
        hub_device=entry.hub_device,
        history=history,
    )
