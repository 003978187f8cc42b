"""Journal-driven checks: every revocation still in force must still hold, and a theft stays one-way.

* Revocations: one ``history`` read per completed event (skips revocations superseded by a newer event or
  undone by ``found``), then point reads of exactly what it revoked. A group fan-out revocation streams the
  group's registration records and point-reads each device.
* Thefts: for every target with a ``stolen``/``compromised`` event (in whatever status but refused), the
  theft binds until a forced ``found`` completes; when a later event superseded it (say a ``lost`` and an
  unforced ``found``), the device must still be revoked in DPS and in its hub.
"""

from __future__ import annotations

from shared.audit import (
    CheckId,
    GroupSnapshot,
    Revocation,
    check_enrollment,
    check_group,
    check_hub_device,
    check_one_way,
    one_way_in_force,
    revocation_of,
)
from shared.errors import HubNotConfigured
from shared.events import EventType
from shared.model import HubDevice
from shared.plan import StepKind
from shared.revocation_found import ONE_WAY
from unprovision.audit.reader import AuditReader

GROUP_STEPS = frozenset({StepKind.GROUP_DISABLED.value, StepKind.GROUP_DELETED.value})
_ENROLLMENT_STEPS = frozenset(
    {StepKind.ENROLLMENT_DISABLED.value, StepKind.BLOCKING_ENROLLMENT_CREATED.value}
)


def is_group(rev: Revocation) -> bool:
    return bool(rev.dps_steps & GROUP_STEPS or rev.group_fanout)


def check_revocations(reader: AuditReader) -> None:
    """Every completed revocation that is still the latest word on its target must still hold."""
    by_id = {g.group_id.lower(): g for g in reader.groups}
    for header in reader.journal.iter_events(status="completed"):
        if header.event_type == EventType.FOUND.value:
            continue
        rev = revocation_in_force(reader, header.target)
        if rev is None or rev.event_id != header.event_id:
            continue
        reader.revoked.add(rev.target.lower())
        if is_group(rev) and rev.target.lower() not in reader.known_groups:
            reader.known_groups[rev.target.lower()] = GroupSnapshot(rev.target, "disabled", "x509")
        if rev.dps_steps & _ENROLLMENT_STEPS:
            reader.spend_dps()
            reader.found.add(check_enrollment(rev, reader.dps.get_enrollment(rev.target)))
        if rev.dps_steps & GROUP_STEPS:
            reader.found.add(check_group(rev, by_id.get(rev.target.lower())))
        for kind, hub, device_id in rev.hub_devices:
            _check_device(reader, rev, kind, hub, device_id)
        if rev.group_fanout:
            _check_fanout(reader, rev)


def revocation_in_force(reader: AuditReader, target: str) -> Revocation | None:
    """The newest completed revocation on ``target``, unless a later `found` undid it."""
    for record in reader.journal.history(target):
        if record.event_type == EventType.FOUND.value and record.status == "completed":
            return None
        rev = revocation_of(record)
        if rev is not None:
            return rev
    return None


def _read_device(reader: AuditReader, hub: str, device_id: str) -> tuple[bool, HubDevice | None]:
    """(hub configured?, the identity as it is now)."""
    try:
        return True, reader.hub_device(hub, device_id)
    except HubNotConfigured:
        reader.notes.append(f"hub {hub} is not configured: {device_id} not checked")
        return False, None


def _check_device(reader: AuditReader, rev: Revocation, kind: str, hub: str, device_id: str) -> None:
    configured, device = _read_device(reader, hub, device_id)
    if configured:
        reader.found.add(check_hub_device(rev, kind, hub, device))


def _check_fanout(reader: AuditReader, rev: Revocation) -> None:
    """A group revocation's devices: stream its registration records, point-read each device."""
    deleted = StepKind.GROUP_DEVICES_DELETED.value in rev.group_fanout
    kind = (StepKind.HUB_IDENTITY_DELETED if deleted else StepKind.HUB_IDENTITY_DISABLED).value
    for reg in reader.group_records(rev.target):
        if reg.assigned_hub and reg.device_id and reader.room(CheckId.HUB_IDENTITY_STILL_ACTIVE):
            _check_device(reader, rev, kind, reg.assigned_hub, reg.device_id)


def check_thefts(reader: AuditReader) -> None:
    """A stolen/compromised device enabled again, no forced found since (``ONE_WAY_REVOCATION_UNDONE``)."""
    seen: set[str] = set()
    for header in reader.journal.iter_events():
        target = header.target.lower()
        if header.event_type not in ONE_WAY or target in seen:
            continue
        seen.add(target)
        theft = one_way_in_force(reader.journal.history(header.target))
        if theft is None or is_group(theft) or not reader.room(CheckId.ONE_WAY_REVOCATION_UNDONE):
            continue
        in_force = revocation_in_force(reader, header.target)
        if in_force is not None and in_force.event_id == theft.event_id:
            continue  # still the latest word: check_revocations covers it
        _check_theft(reader, theft)


def _check_theft(reader: AuditReader, theft: Revocation) -> None:
    enrollment = None
    if theft.dps_steps & _ENROLLMENT_STEPS:
        reader.spend_dps()
        enrollment = reader.dps.get_enrollment(theft.target)
    devices = [d for _, hub, device_id in theft.hub_devices
               for d in [_read_device(reader, hub, device_id)[1]] if d is not None]
    reader.found.add(check_one_way(theft, enrollment, devices))
