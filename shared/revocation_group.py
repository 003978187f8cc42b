"""Revocation of a whole enrollment group (``compromised`` or ``retired`` with ``groupId``).

Called by ``shared.revocation.plan_revocation``; pure like the rest of the planner (no I/O, no clock).

Decisions not pinned by a documented source (docs/planner.md):
* The group is always disabled first; ``deleteGroup`` deletes it only when no enabled group higher in the
  certificate chain would let its devices re-enroll (otherwise it stays disabled, with a warning).
* Enabled groups *below* it in the chain are reported, not changed: they still admit what they cover.
* Hub identities of the group's devices are changed by one fan-out step that the orchestrator expands.
"""

from __future__ import annotations

from shared.certs import groups_above
from shared.events import GROUP_SCOPE_TYPES
from shared.ids import same_dps_id
from shared.model import InventorySnapshot, ProvisioningStatus
from shared.plan import Plan, Step, StepKind
from shared.policy import HubAction, Policy
from shared.revocation_draft import Draft, group_names, status_reason

_FANOUT_KIND = {
    HubAction.DISABLE: StepKind.GROUP_DEVICES_DISABLED,
    HubAction.DELETE: StepKind.GROUP_DEVICES_DELETED,
}


def plan_group(draft: Draft, policy: Policy, snap: InventorySnapshot) -> Plan:
    """Disable (maybe delete) the group named by the event, then fan out to its devices' hub identities."""
    event = draft.event
    if event.type not in GROUP_SCOPE_TYPES:
        return draft.refuse(
            f"{event.type.value} cannot apply to a whole group: only compromised or retired do; "
            "send registrationId to act on one device"
        )
    group = next((g for g in snap.groups if same_dps_id(g.group_id, event.target)), None)
    if group is None:
        return draft.refuse(f"enrollment group {event.target} not found")
    draft.steps.append(
        Step(
            StepKind.GROUP_DISABLED,
            group.group_id,
            f"{event.type.value}: a disabled group refuses every device that reaches it first",
        )
    )
    if event.delete_group:
        above = groups_above(group, snap.groups)
        draft.warn(*above.warnings)
        if above.may_admit:
            draft.warn(
                f"group {group.group_id} kept disabled, not deleted: enabled group(s) "
                f"{group_names(above.enabled + above.uncertain)} higher in the chain would let its "
                "devices re-enroll"
            )
        else:
            draft.steps.append(
                Step(
                    StepKind.GROUP_DELETED,
                    group.group_id,
                    "deleteGroup requested and no enabled group higher in the chain covers it",
                )
            )
    below = [
        g
        for g in snap.groups
        if g != group
        and g.status is ProvisioningStatus.ENABLED
        and group in groups_above(g, snap.groups).groups
    ]
    if below:
        draft.warn(
            f"enabled group(s) {group_names(below)} sit below {group.group_id} in the chain and still "
            "admit the devices they cover"
        )
    action = policy.rule(event.type).hub
    if action is HubAction.NONE:
        draft.warn("policy leaves hub identities unchanged")
    else:
        draft.steps.append(
            Step(
                _FANOUT_KIND[action],
                group.group_id,
                f"every device registered through {group.group_id} is {action.value}d in its own hub",
                params={"statusReason": status_reason(event)},
            )
        )
    return draft.plan()
