"""A plan being drafted: the steps and warnings the planner collects for one event, and the helpers every
part of the planner shares (the hub identity of a device, the hub's statusReason, group names in warnings).

Pure like the rest of the planner (no I/O, no clock). ``shared.revocation`` dispatches an event to the
device, ``found`` or group planner; each builds on this module only, so the dependencies run one way.
"""

from __future__ import annotations

from shared.events import LifecycleEvent
from shared.model import HUB_IDENTITY_NOT_READ, EnrollmentGroup, InventorySnapshot
from shared.plan import Plan, Service, Step

MAX_STATUS_REASON = 128


class Draft:
    """Steps and warnings collected while planning one event."""

    def __init__(self, event: LifecycleEvent) -> None:
        self.event = event
        self.steps: list[Step] = []
        self.warnings: list[str] = []

    def warn(self, *messages: str) -> None:
        self.warnings.extend(m for m in messages if m not in self.warnings)

    def plan(self) -> Plan:
        dps = [s for s in self.steps if s.service is Service.DPS]
        hub = [s for s in self.steps if s.service is not Service.DPS]
        return Plan(
            self.event.event_id,
            self.event.type.value,
            self.event.target,
            steps=tuple(dps + hub),
            warnings=tuple(self.warnings),
        )

    def refuse(self, message: str) -> Plan:
        return Plan(
            self.event.event_id,
            self.event.type.value,
            self.event.target,
            warnings=tuple(self.warnings),
            refusal=message,
        )


def status_reason(event: LifecycleEvent) -> str:
    """The hub's statusReason: the event's note, else a short description (at most 128 characters)."""
    return (event.note or f"{event.type.value}: event {event.event_id}")[:MAX_STATUS_REASON]


def group_names(groups: tuple[EnrollmentGroup, ...] | list[EnrollmentGroup]) -> str:
    """Distinct group IDs, in order, for warnings."""
    return ", ".join(dict.fromkeys(g.group_id for g in groups))


def resolve_hub(draft: Draft, snap: InventorySnapshot) -> tuple[str, str] | None:
    """(hub, device ID) of the device's identity: registration first, then the hub device, else None."""
    reg, dev, enr, event = snap.registration, snap.hub_device, snap.enrollment, draft.event
    hub = (reg.assigned_hub if reg else None) or (dev.hub if dev else None)
    if hub is None:
        draft.warn(
            f"no hub known for {event.target} (no assignedHub, no hub identity): hub identity not changed"
        )
        return None
    own_device_id = enr.device_id if enr is not None and not enr.is_blocking else None
    device_id = (
        (reg.device_id if reg else None)
        or (dev.device_id if dev and dev.hub == hub else None)
        or event.device_id
        or own_device_id
        or event.target
    )
    if event.device_id is not None and event.device_id != device_id:
        draft.warn(
            f"event deviceId {event.device_id!r} differs from the hub device ID {device_id!r} DPS assigned;"
            " the assigned one is used"
        )
    if dev is None and HUB_IDENTITY_NOT_READ not in snap.extra:
        draft.warn(f"hub identity {device_id} not found on {hub}; its step will report already done")
    return hub, device_id
