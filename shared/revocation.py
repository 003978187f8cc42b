"""The revocation planner: ``plan_revocation(event, policy, snapshot) -> Plan``, a pure function.

It decides, from what the inventory snapshot shows, which DPS steps and then which hub steps revoke (or
restore) a device or a group, each with its reason, plus warnings and refusals. It does no I/O and reads no
clock. This module only dispatches: one device in ``shared.revocation_device``, ``found`` in
``shared.revocation_found``, a whole group in ``shared.revocation_group``; all three build on
``shared.revocation_draft``. Dependencies run one way, towards the draft.
"""

from __future__ import annotations

from shared.events import EventType, LifecycleEvent
from shared.model import InventorySnapshot
from shared.plan import Plan
from shared.policy import Policy
from shared.revocation_device import plan_device
from shared.revocation_draft import Draft
from shared.revocation_found import plan_found
from shared.revocation_group import plan_group


def plan_revocation(event: LifecycleEvent, policy: Policy, snapshot: InventorySnapshot) -> Plan:
    """The plan for one validated event over the snapshot of its target (DPS steps first, then hub steps)."""
    draft = Draft(event)
    if event.is_group:
        return plan_group(draft, policy, snapshot)
    if event.type is EventType.FOUND:
        return plan_found(draft, snapshot)
    return plan_device(draft, policy, snapshot)
