"""Plan types: what the planner decides and the orchestrator applies, in order.

A plan lists DPS steps first, then hub steps. Each step names what it changes, where, and why.
Step kinds are the past-tense outcomes the journal records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StepKind(StrEnum):
    ENROLLMENT_DISABLED = "EnrollmentDisabled"
    ENROLLMENT_DELETED = "EnrollmentDeleted"
    BLOCKING_ENROLLMENT_CREATED = "BlockingEnrollmentCreated"
    GROUP_DISABLED = "GroupDisabled"
    GROUP_DELETED = "GroupDeleted"
    HUB_IDENTITY_DISABLED = "HubIdentityDisabled"
    HUB_IDENTITY_DELETED = "HubIdentityDeleted"
    ENROLLMENT_REENABLED = "EnrollmentReenabled"
    BLOCKING_ENROLLMENT_REMOVED = "BlockingEnrollmentRemoved"
    HUB_IDENTITY_REENABLED = "HubIdentityReenabled"
    # Group scope: every device registered through the group, in its own hub (fan-out work).
    GROUP_DEVICES_DISABLED = "GroupDevicesDisabled"
    GROUP_DEVICES_DELETED = "GroupDevicesDeleted"


class Service(StrEnum):
    DPS = "dps"
    HUB = "hub"


DPS_STEPS = frozenset(
    {
        StepKind.ENROLLMENT_DISABLED,
        StepKind.ENROLLMENT_DELETED,
        StepKind.BLOCKING_ENROLLMENT_CREATED,
        StepKind.GROUP_DISABLED,
        StepKind.GROUP_DELETED,
        StepKind.ENROLLMENT_REENABLED,
        StepKind.BLOCKING_ENROLLMENT_REMOVED,
    }
)


class StepOutcome(StrEnum):
    DONE = "done"
    ALREADY_DONE = "already_done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    target: str  # registration ID, enrollment group ID or hub device ID
    reason: str
    hub: str | None = None  # hub host name, for hub steps
    # Extra inputs: {"certificate": PEM} for a blocking enrollment, {"statusReason": ...} for hub steps.
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def service(self) -> Service:
        return Service.DPS if self.kind in DPS_STEPS else Service.HUB


@dataclass(frozen=True)
class Plan:
    event_id: str
    event_type: str
    target: str  # the registration ID or enrollment group ID the event names
    steps: tuple[Step, ...] = ()
    warnings: tuple[str, ...] = ()
    refusal: str | None = None  # set when the planner refuses to act; then steps is empty

    @property
    def refused(self) -> bool:
        return self.refusal is not None


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """A JSON-ready view of a plan (for the journal, the CLI's --json and outcomes). Holds no secrets."""
    return {
        "eventId": plan.event_id,
        "eventType": plan.event_type,
        "target": plan.target,
        "refusal": plan.refusal,
        "warnings": list(plan.warnings),
        "steps": [
            {
                "kind": s.kind.value,
                "service": s.service.value,
                "target": s.target,
                "hub": s.hub,
                "reason": s.reason,
                "params": dict(s.params),
            }
            for s in plan.steps
        ],
    }


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    """The inverse of ``plan_to_dict``."""
    steps = tuple(
        Step(
            StepKind(s["kind"]),
            s["target"],
            s["reason"],
            hub=s.get("hub"),
            params=dict(s.get("params") or {}),
        )
        for s in data.get("steps", ())
    )
    return Plan(
        data["eventId"],
        data["eventType"],
        data["target"],
        steps=steps,
        warnings=tuple(data.get("warnings", ())),
        refusal=data.get("refusal"),
    )
