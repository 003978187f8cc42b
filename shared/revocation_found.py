"""The ``found`` event: undo the last revocation of a device, as far as it can safely be undone.

Called by ``shared.revocation.plan_revocation``; pure like the rest of the planner (no I/O, no clock).

Decisions not pinned by a documented source (reference §1):
* Only the newest completed event in the device's history is undone; ``found`` after ``found`` is refused.
* sold/moved/retired deleted the enrollment and/or hub identity: nothing to restore, so it is refused.
* stolen/compromised are undone only with ``force``.
* A blocking enrollment is removed only when its marker names a ``lost`` event in the history (or a
  stolen/compromised one with ``force``), so a block placed by an earlier theft is never lifted by accident.
"""

from __future__ import annotations

from shared.events import EventType, LifecycleEvent
from shared.model import InventorySnapshot, PastRevocation
from shared.plan import Plan, Step, StepKind
from shared.revocation import Draft, resolve_hub

_FORCE_REQUIRED = frozenset({EventType.STOLEN.value, EventType.COMPROMISED.value})
_DELETING = frozenset({EventType.SOLD.value, EventType.MOVED.value, EventType.RETIRED.value})


def plan_found(draft: Draft, snap: InventorySnapshot) -> Plan:
    """Steps that undo the newest revocation in ``snap.history``, or a refusal saying why not."""
    event = draft.event
    if not snap.history:
        return draft.refuse(f"nothing to undo: no earlier revocation of {event.target} is recorded")
    last = snap.history[0]
    refusal = _found_refusal(event, last)
    if refusal:
        return draft.refuse(refusal)
    kinds = set(last.step_kinds)
    enr = snap.enrollment
    if StepKind.ENROLLMENT_DISABLED.value in kinds:
        if enr is not None and not enr.is_blocking:
            draft.steps.append(
                Step(
                    StepKind.ENROLLMENT_REENABLED,
                    enr.registration_id,
                    f"undo {last.event_type} event {last.event_id}: its enrollment was disabled",
                )
            )
        else:
            draft.warn(f"the enrollment disabled by {last.event_id} no longer exists; nothing to re-enable")
    if StepKind.BLOCKING_ENROLLMENT_CREATED.value in kinds:
        refusal = _unblock(draft, snap, last)
        if refusal:
            return draft.refuse(refusal)
    if StepKind.HUB_IDENTITY_DISABLED.value in kinds:
        resolved = resolve_hub(draft, snap)
        if resolved:
            draft.steps.append(
                Step(
                    StepKind.HUB_IDENTITY_REENABLED,
                    resolved[1],
                    f"undo {last.event_type} event {last.event_id}: its hub identity was disabled",
                    hub=resolved[0],
                )
            )
    if not draft.steps:
        return draft.refuse(f"nothing left to undo from {last.event_type} event {last.event_id}")
    return draft.plan()


def _found_refusal(event: LifecycleEvent, last: PastRevocation) -> str | None:
    what = f"the last event on {event.target} was {last.event_type} ({last.event_id})"
    if last.event_type == EventType.FOUND.value:
        return f"nothing to undo: {what}, already undone"
    if last.event_type in _DELETING:
        return (
            f"cannot undo: {what}, which deleted the enrollment and/or hub identity; re-provision the device "
            "with a new enrollment instead"
        )
    if last.event_type in _FORCE_REQUIRED and not event.force:
        return f"{what}; a found event restores it only with force=true"
    return None


def _unblock(draft: Draft, snap: InventorySnapshot, last: PastRevocation) -> str | None:
    enr = snap.enrollment
    if enr is None or not enr.is_blocking:
        draft.warn(f"no blocking enrollment found for {draft.event.target}; nothing to remove")
        return None
    origin = next((h for h in snap.history if h.event_id == enr.blocking_marker), None)
    if origin is None:
        draft.warn(
            f"blocking enrollment {enr.registration_id} was created by event {enr.blocking_marker}, "
            "which is not in this device's history; left in place"
        )
        return None
    if origin.event_type in _FORCE_REQUIRED and not draft.event.force:
        return (
            f"the blocking enrollment was created by {origin.event_type} event {origin.event_id}; "
            "a found event removes it only with force=true"
        )
    draft.steps.append(
        Step(
            StepKind.BLOCKING_ENROLLMENT_REMOVED,
            enr.registration_id,
            f"undo {last.event_type} event {last.event_id}: remove the blocking enrollment so the "
            "device registers through its group again",
            params={"marker": str(enr.blocking_marker)},
        )
    )
    return None
