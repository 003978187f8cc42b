"""The audit's fleet join: every enabled hub identity should have a DPS registration record, and vice versa.

Split from ``unprovision.audit``, whose ``_Audit.check_fleet`` calls ``check_fleet`` here with the run's
state (settings, ports, metering, capped findings). That module imports this one lazily, at call time, since
this one imports it.

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
from typing import TYPE_CHECKING

from shared.audit import BloomFilter, CheckId, finding
from shared.model import HubDeviceStatus, ProvisioningStatus, RegistrationState
from shared.ports import DeviceRegistry
from unprovision.audit import DPS_KEY

if TYPE_CHECKING:
    from unprovision.audit import _Audit


def check_fleet(run: _Audit) -> None:
    """Three streaming passes with two fixed-size filters (module docstring)."""
    in_dps = BloomFilter(run.cfg.filter_capacity, run.cfg.filter_error_rate)
    for reg in _registrations(run):
        in_dps.add(_key(reg.assigned_hub or "", _device_of(reg)))
    in_hub = BloomFilter(run.cfg.filter_capacity, run.cfg.filter_error_rate)
    hubs = {h.lower(): h for h in run.registries.hubs()}
    for hub in hubs.values():
        registry = run.registries.for_hub(hub)
        for device in run.metered(registry.iter_devices(run.cfg.page_size), f"{hub}#query"):
            in_hub.add(_key(hub, device.device_id))
            if device.status == HubDeviceStatus.ENABLED and _key(hub, device.device_id) not in in_dps:
                _confirm_hub_orphan(run, hub, device.device_id)
    skipped = 0
    for reg in _registrations(run, disabled_groups=False):
        hub = reg.assigned_hub or ""
        if hub.lower() not in hubs:
            skipped += 1
        elif _key(hub, _device_of(reg)) not in in_hub and reg.registration_id.lower() not in run.revoked:
            _confirm_missing_device(run, run.registries.for_hub(hub), reg)
    if skipped:
        run.notes.append(f"{skipped} registration record(s) name hubs this app has no credentials for")


def _registrations(run: _Audit, *, disabled_groups: bool = True) -> Iterator[RegistrationState]:
    """Every assigned record: group listings, then the record of each enabled own enrollment.

    Records of disabled groups are stale by design (revoked devices keep them), so the
    REGISTRATION_WITHOUT_HUB_DEVICE pass leaves them out (``disabled_groups=False``).
    """
    for group in run.groups:
        if not disabled_groups and group.status != ProvisioningStatus.ENABLED:
            continue
        for reg in run.group_records(group.group_id):
            if reg.status == "assigned" and reg.assigned_hub:
                yield reg
    if not run.cfg.check_individual_registrations:
        return
    for enrollment in run.metered(run.dps.iter_enrollments(run.cfg.page_size), DPS_KEY):
        if enrollment.is_blocking or enrollment.status != ProvisioningStatus.ENABLED:
            continue
        run.spend(DPS_KEY)
        own = run.dps.get_registration(enrollment.registration_id)
        if own is not None and own.status == "assigned" and own.assigned_hub:
            yield own


def _confirm_hub_orphan(run: _Audit, hub: str, device_id: str) -> None:
    check = CheckId.HUB_DEVICE_WITHOUT_REGISTRATION
    evidence = f"enabled identity in {hub} has no DPS registration record"
    if run.room(check):
        run.spend(DPS_KEY)
        reg = run.dps.get_registration(device_id)  # group devices: registration ID = device ID
        if reg is not None and (reg.assigned_hub or "").lower() == hub.lower():
            return
    else:
        evidence += " (not confirmed by a point read)"
    run.found.add([finding(check, f"{hub}/{device_id}", evidence)])


def _confirm_missing_device(run: _Audit, registry: DeviceRegistry, reg: RegistrationState) -> None:
    check = CheckId.REGISTRATION_WITHOUT_HUB_DEVICE
    evidence = f"record assigns {_device_of(reg)} to {reg.assigned_hub}, which has no such identity"
    if run.room(check):
        run.spend(registry.hub)
        if registry.get(_device_of(reg)) is not None:
            return
    else:
        evidence += " (not confirmed by a point read)"
    run.found.add([finding(check, reg.registration_id, evidence)])


def _key(hub: str, device_id: str) -> str:
    return f"{hub.lower()}/{device_id}"


def _device_of(reg: RegistrationState) -> str:
    return reg.device_id or reg.registration_id
