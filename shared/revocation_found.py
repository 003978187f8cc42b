"""The ``found`` event: undo the revocation of a device, as far as it can safely be undone.

Called by ``shared.revocation.plan_revocation``; pure like the rest of the planner (no I/O, no clock).

Decisions not pinned by a documented source (docs/planner.md):
* A theft is one-way: once a ``stolen`` or ``compromised`` event that was not refused is in the device's
  history (completed, failed part-way or still running), only a ``found`` with ``force`` lifts it, whatever
  came after it (a later ``lost``, duplicates that found nothing to do, refused ``found`` events). A forced
  ``found`` that completed ends it; its steps carry ``LIFTS_PARAM``: the journal shows which theft it lifted.
* Without a theft in force, only the newest event is undone; ``found`` after ``found`` is refused. A forced
  ``found`` undoes every event since the theft it lifts.
* sold/moved/retired deleted the enrollment and/or hub identity: nothing to restore, so it is refused.
* A blocking enrollment is removed when its marker names an event being undone, or — with ``force`` — when it
  carries this app's marker at all (even one placed under another device's event).
"""

from __future__ import annotations

from dataclasses import replace

from shared.events import EventType
from shared.model import InventorySnapshot, PastRevocation
from shared.plan import Plan, Step, StepKind
from shared.revocation_draft import Draft, resolve_hub

ONE_WAY = frozenset({EventType.STOLEN.value, EventType.COMPROMISED.value})
LIFTS_PARAM = "liftsOneWay"  # step param of a forced found: the eventId of the theft it lifts
_DELETING = frozenset({EventType.SOLD.value, EventType.MOVED.value, EventType.RETIRED.value})
_NOT_APPLIED = frozenset({"refused", "rejected"})


def one_way_in_force(history: tuple[PastRevocation, ...]) -> PastRevocation | None:
    """The newest theft (``stolen``/``compromised``, not refused) no completed forced found lifted since."""
    for past in history:  # newest first
        if past.status in _NOT_APPLIED:
            continue
        if past.event_type == EventType.FOUND.value and past.forced and past.status == "completed":
            return None
        if past.event_type in ONE_WAY:
            return past
    return None


def lifts_one_way(plan: Plan) -> bool:
    """Whether a ``found`` plan lifts a theft (it was forced): its steps name the theft."""
    return any(LIFTS_PARAM in step.params for step in plan.steps)


def plan_found(draft: Draft, snap: InventorySnapshot) -> Plan:
    """Steps that undo what ``snap.history`` says was revoked, or a refusal saying why not."""
    event = draft.event
    history = tuple(h for h in snap.history if h.status not in _NOT_APPLIED)
    theft = one_way_in_force(history)
    if theft is not None and not event.force:
        return draft.refuse(
            f"{event.target} was {theft.event_type} (event {theft.event_id}); whatever came after, only a "
            "found event with force=true lifts it"
        )
    undone = _undone(history, theft)
    refusal = _refusal(draft, undone, snap)
    if refusal:
        return draft.refuse(refusal)
    refusal = _add_steps(draft, snap, undone)
    if refusal:
        return draft.refuse(refusal)
    if not draft.steps:
        what = ", ".join(f"{h.event_type} event {h.event_id}" for h in undone) or "nothing recorded"
        return draft.refuse(f"nothing left to undo on {event.target} ({what})")
    if theft is not None:
        draft.steps = [replace(s, params={**s.params, LIFTS_PARAM: theft.event_id}) for s in draft.steps]
    return draft.plan()


def _undone(history: tuple[PastRevocation, ...], theft: PastRevocation | None) -> tuple[PastRevocation, ...]:
    """The events this found undoes: every one since the theft it lifts, else the newest one."""
    if theft is None:
        return history[:1]
    return history[: history.index(theft) + 1]


def _refusal(draft: Draft, undone: tuple[PastRevocation, ...], snap: InventorySnapshot) -> str | None:
    event = draft.event
    lifts_block = event.force and snap.enrollment is not None and snap.enrollment.is_blocking
    if not undone:
        nothing = f"nothing to undo: no earlier revocation of {event.target} is recorded"
        return None if lifts_block else nothing
    last = undone[0]
    what = f"the last event on {event.target} was {last.event_type} ({last.event_id})"
    if last.event_type == EventType.FOUND.value:
        return f"nothing to undo: {what}, already undone"
    deleting = next((h for h in undone if h.event_type in _DELETING), None)
    if deleting is not None:
        return (
            f"cannot undo: {deleting.event_type} event {deleting.event_id} deleted the enrollment and/or hub "
            "identity; re-provision the device with a new enrollment instead"
        )
    return None


def _add_steps(draft: Draft, snap: InventorySnapshot, undone: tuple[PastRevocation, ...]) -> str | None:
    kinds = {kind for h in undone for kind in h.step_kinds}
    label = "undo " + ", ".join(f"{h.event_type} event {h.event_id}" for h in undone) if undone else "force"
    enr = snap.enrollment
    if StepKind.ENROLLMENT_DISABLED.value in kinds:
        if enr is not None and not enr.is_blocking:
            draft.steps.append(Step(StepKind.ENROLLMENT_REENABLED, enr.registration_id,
                                    f"{label}: its enrollment was disabled"))
        else:
            draft.warn("the disabled enrollment no longer exists; nothing to re-enable")
    blocked = StepKind.BLOCKING_ENROLLMENT_CREATED.value in kinds
    if blocked or (draft.event.force and enr is not None and enr.is_blocking):
        refusal = _unblock(draft, snap, label)
        if refusal:
            return refusal
    if StepKind.HUB_IDENTITY_DISABLED.value in kinds:
        resolved = resolve_hub(draft, snap)
        if resolved:
            draft.steps.append(Step(StepKind.HUB_IDENTITY_REENABLED, resolved[1],
                                    f"{label}: its hub identity was disabled", hub=resolved[0]))
    return None


def _unblock(draft: Draft, snap: InventorySnapshot, label: str) -> str | None:
    enr, force = snap.enrollment, draft.event.force
    if enr is None or not enr.is_blocking:
        draft.warn(f"no blocking enrollment found for {draft.event.target}; nothing to remove")
        return None
    origin = next((h for h in snap.history if h.event_id == enr.blocking_marker), None)
    if origin is None and not force:
        draft.warn(
            f"blocking enrollment {enr.registration_id} was created by event {enr.blocking_marker}, "
            "which is not in this device's history; left in place (a found with force=true removes it)"
        )
        return None
    if origin is not None and origin.event_type in ONE_WAY and not force:
        return (
            f"the blocking enrollment was created by {origin.event_type} event {origin.event_id}; "
            "a found event removes it only with force=true"
        )
    if origin is None:
        draft.warn(f"blocking enrollment {enr.registration_id} was created by event {enr.blocking_marker}, "
                   "not in this device's history; removed because the found is forced")
    draft.steps.append(
        Step(
            StepKind.BLOCKING_ENROLLMENT_REMOVED,
            enr.registration_id,
            f"{label}: remove the blocking enrollment so the device registers through its group again",
            params={"marker": str(enr.blocking_marker)},
        )
    )
    return None
