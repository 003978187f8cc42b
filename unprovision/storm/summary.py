"""What waits in each hub's pending set, for an operator following a storm (``unprovision pending``).

A set is read whole (it is one Table partition a hub), so this costs a page read per 1,000 steps; it changes
nothing. Steps carry no time: how long an event has waited is in its journal record (``status``), and the
audit's ``EVENT_STUCK`` reports one left waiting too long.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.ports import PendingHubSteps
from unprovision.storm.coalesce import DIRECT_CLAIM


@dataclass(frozen=True)
class HubSet:
    """One hub's pending set, counted."""

    hub: str
    waiting: int = 0  # no flush has taken them yet
    in_flush: int = 0  # taken by a flush: running, or killed and left for the next one
    settling: int = 0  # taken by a later event on the same device, which applies them first
    by_action: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.waiting + self.in_flush + self.settling

    def to_dict(self) -> dict[str, object]:
        return {"hub": self.hub, "waiting": self.waiting, "inFlush": self.in_flush, "settling": self.settling,
                "byAction": dict(sorted(self.by_action.items()))}


def summarize(pending: PendingHubSteps, hubs: Iterable[str]) -> list[HubSet]:
    """Each hub's set, in the order given (every hub, an empty set too)."""
    return [_count(pending, hub) for hub in hubs]


def _count(pending: PendingHubSteps, hub: str) -> HubSet:
    states: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    for step in pending.entries(hub):
        actions[step.action] += 1
        if step.claim is None:
            states["waiting"] += 1
        elif step.claim.startswith(DIRECT_CLAIM):
            states["settling"] += 1
        else:
            states["in_flush"] += 1
    return HubSet(hub, states["waiting"], states["in_flush"], states["settling"], dict(actions))
