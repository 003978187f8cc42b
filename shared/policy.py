"""Policy: what each revocation event type does to an individual enrollment and to the hub identity.

The default table follows the recipes of docs/azure-behaviour.md (§1.3). An app setting may override rows as
JSON, e.g. ``{"sold": {"enrollment": "disable", "hub": "disable"}}``; ``load_policy`` takes that text (or
mapping) and never reads the environment itself. What is NOT configurable, on purpose:

* group members are always blocked with a disabled individual enrollment that is never deleted (deleting it
  would let the device back in through its group);
* ``found`` always undoes the last ``lost`` (and refuses after stolen/compromised unless forced);
* an X.509 delete is always downgraded to disable when an enabled group covers the chain.

For group-scope events (compromised, retired) the ``hub`` action of the type decides whether the group's
devices are disabled or deleted in their hubs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from shared.errors import FieldError, Rejected
from shared.events import REVOCATION_TYPES, EventType


class EnrollmentAction(StrEnum):
    DISABLE = "disable"
    DELETE = "delete"


class HubAction(StrEnum):
    DISABLE = "disable"
    DELETE = "delete"
    NONE = "none"  # leave the hub identity alone (DPS-only revocation)


@dataclass(frozen=True)
class Rule:
    """The actions of one event type; group members are always blocked (see module doc)."""

    enrollment: EnrollmentAction
    hub: HubAction


@dataclass(frozen=True)
class Policy:
    rules: Mapping[EventType, Rule]

    def rule(self, event_type: EventType) -> Rule:
        return self.rules[event_type]

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {
            t.value: {"enrollment": r.enrollment.value, "hub": r.hub.value} for t, r in self.rules.items()
        }


_TEMPORARY = Rule(EnrollmentAction.DISABLE, HubAction.DISABLE)
_PERMANENT = Rule(EnrollmentAction.DELETE, HubAction.DELETE)

DEFAULT_POLICY = Policy(
    rules={
        EventType.LOST: _TEMPORARY,
        EventType.STOLEN: _TEMPORARY,
        EventType.COMPROMISED: _TEMPORARY,  # the hub identity is kept, disabled, for forensics
        EventType.SOLD: _PERMANENT,
        EventType.MOVED: _PERMANENT,
        EventType.RETIRED: _PERMANENT,
    }
)

_ACTIONS: dict[str, type[StrEnum]] = {"enrollment": EnrollmentAction, "hub": HubAction}


def _row_errors(name: str, row: Any) -> list[FieldError]:
    if not isinstance(row, Mapping):
        return [FieldError(f"policy.{name}", "must be an object with enrollment and/or hub")]
    errors: list[FieldError] = []
    for key, value in row.items():
        enum = _ACTIONS.get(key)
        if enum is None:
            errors.append(FieldError(f"policy.{name}.{key}", "unknown key (expected enrollment or hub)"))
        elif value not in {m.value for m in enum}:
            allowed = ", ".join(m.value for m in enum)
            errors.append(FieldError(f"policy.{name}.{key}", f"must be one of {allowed}"))
    return errors


def _decode(override: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(override, str):
        return override
    try:
        decoded = json.loads(override)
    except ValueError:
        raise Rejected([FieldError("policy", "not valid JSON")], "invalid policy") from None
    if not isinstance(decoded, Mapping):
        raise Rejected([FieldError("policy", "must be a JSON object")], "invalid policy")
    return decoded


def load_policy(override: str | Mapping[str, Any] | None = None, base: Policy = DEFAULT_POLICY) -> Policy:
    """The default policy with the override's rows merged in; raises ``Rejected`` listing every bad entry."""
    if override is None or (isinstance(override, str) and not override.strip()):
        return base
    table = _decode(override)
    errors: list[FieldError] = []
    for name, row in table.items():
        if name == EventType.FOUND.value:
            errors.append(FieldError("policy.found", "found is not configurable (it undoes the last lost)"))
        elif name not in {t.value for t in REVOCATION_TYPES}:
            errors.append(FieldError(f"policy.{name}", "unknown event type"))
        else:
            errors.extend(_row_errors(name, row))
    if errors:
        raise Rejected(errors, "invalid policy")
    rules = dict(base.rules)
    for name, row in table.items():
        current = rules[EventType(name)]
        rules[EventType(name)] = replace(
            current,
            enrollment=EnrollmentAction(row.get("enrollment", current.enrollment)),
            hub=HubAction(row.get("hub", current.hub)),
        )
    return Policy(rules=rules)
