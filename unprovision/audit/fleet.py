"""The audit's fleet join: every enabled hub identity should have a DPS registration record, and vice versa.

``check_fleet`` works on one run's ``AuditReader`` (settings, ports, metering, capped findings).

Memory is bounded by settings, never by fleet size: two Bloom filters of fixed size (``filter_capacity``).
Pass 1 streams every registration record (group listings + the record of each enabled own enrollment) into
filter R; pass 2 streams every hub's devices into filter H and tests each enabled device against R; pass 3
streams the registrations again and tests each against H. A Bloom filter never says "absent" wrongly, so
every candidate is a real miss of the listing; candidates are confirmed by a point read (races, and hub
devices whose ID differs from the registration ID). A false "present" (≈1 % at capacity) hides a finding for
that run. Point confirmations stop at ``max_findings_per_check``; further candidates are counted, not
confirmed (noted in the report).
"""

from __future__ import annotations

from collections.abc import Iterator

from shared.audit import CheckId, finding
from shared.bloom import BloomFilter
from shared.model import HubDeviceStatus, ProvisioningStatus, RegistrationState
from unprovision.audit.reader import AuditReader


def check_fleet(reader: AuditReader) -> None:
    """Three streaming passes with two fixed-size filters (module docstring)."""
    in_dps = BloomFilter(reader.cfg.filter_capacity, reader.cfg.filter_error_rate)
    for reg in _registrations(reader):
        in_dps.add(_key(reg.assigned_hub or "", _device_of(reg)))
    in_hub = BloomFilter(reader.cfg.filter_capacity, reader.cfg.filter_error_rate)
    hubs = {h.lower(): h for h in reader.registries.hubs()}
    for hub in hubs.values():
        for device in reader.hub_devices(hub):
            in_hub.add(_key(hub, device.device_id))
            if device.status == HubDeviceStatus.ENABLED and _key(hub, device.device_id) not in in_dps:
                _confirm_hub_orphan(reader, hub, device.device_id)
    skipped = 0
    for reg in _registrations(reader, disabled_groups=False):
        hub = reg.assigned_hub or ""
        if hub.lower() not in hubs:
            skipped += 1
        elif _key(hub, _device_of(reg)) not in in_hub and reg.registration_id.lower() not in reader.revoked:
            _confirm_missing_device(reader, hub, reg)
    if skipped:
        reader.notes.append(f"{skipped} registration record(s) name hubs this app has no credentials for")


def _registrations(reader: AuditReader, *, disabled_groups: bool = True) -> Iterator[RegistrationState]:
    """Every assigned record: group listings, then the record of each enabled own enrollment.

    Records of disabled groups are stale by design (revoked devices keep them), so the
    REGISTRATION_WITHOUT_HUB_DEVICE pass leaves them out (``disabled_groups=False``).
    """
    for group in reader.groups:
        if not disabled_groups and group.status != ProvisioningStatus.ENABLED:
            continue
        for reg in reader.group_records(group.group_id):
            if reg.status == "assigned" and reg.assigned_hub:
                yield reg
    if not reader.cfg.check_individual_registrations:
        return
    for enrollment in reader.paged(reader.dps.iter_enrollments(reader.cfg.page_size), reader.spend_dps):
        if enrollment.is_blocking or enrollment.status != ProvisioningStatus.ENABLED:
            continue
        reader.spend_dps()
        own = reader.dps.get_registration(enrollment.registration_id)
        if own is not None and own.status == "assigned" and own.assigned_hub:
            yield own


def _confirm_hub_orphan(reader: AuditReader, hub: str, device_id: str) -> None:
    check = CheckId.HUB_DEVICE_WITHOUT_REGISTRATION
    evidence = f"enabled identity in {hub} has no DPS registration record"
    if reader.room(check):
        reader.spend_dps()
        reg = reader.dps.get_registration(device_id)  # group devices: registration ID = device ID
        if reg is not None and (reg.assigned_hub or "").lower() == hub.lower():
            return
    else:
        evidence += " (not confirmed by a point read)"
    reader.found.add([finding(check, f"{hub}/{device_id}", evidence)])


def _confirm_missing_device(reader: AuditReader, hub: str, reg: RegistrationState) -> None:
    check = CheckId.REGISTRATION_WITHOUT_HUB_DEVICE
    evidence = f"record assigns {_device_of(reg)} to {reg.assigned_hub}, which has no such identity"
    if reader.room(check):
        if reader.hub_device(hub, _device_of(reg)) is not None:
            return
    else:
        evidence += " (not confirmed by a point read)"
    reader.found.add([finding(check, reg.registration_id, evidence)])


def _key(hub: str, device_id: str) -> str:
    return f"{hub.lower()}/{device_id}"


def _device_of(reg: RegistrationState) -> str:
    return reg.device_id or reg.registration_id
