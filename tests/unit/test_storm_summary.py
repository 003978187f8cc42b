"""Counting each hub's pending set for ``python -m unprovision pending``."""

from __future__ import annotations

from shared.adapters.pending_memory import InMemoryPendingHubSteps
from shared.ports import PendingHubStep
from unprovision.commands.pending import render
from unprovision.storm.coalesce import DIRECT_CLAIM, FLUSH_CLAIM
from unprovision.storm.summary import summarize

HUB, QUIET = "hub-a.example", "hub-b.example"


def step(device: str, action: str = "disable") -> PendingHubStep:
    return PendingHubStep(hub=HUB, device_id=device, event_id=f"ev-{device}", step_index=1, action=action)


def storm_set() -> InMemoryPendingHubSteps:
    """Five steps on HUB: two waiting, two taken by a flush, one settled by a later event on its device."""
    pending = InMemoryPendingHubSteps()
    added = [pending.add(step(f"d{n}", "delete" if n == 4 else "disable")) for n in range(5)]
    pending.claim(added[:2], f"{FLUSH_CLAIM}1")
    pending.claim(added[2:3], f"{DIRECT_CLAIM}1")
    return pending


def test_each_hubs_set_is_counted_by_who_holds_its_steps_and_by_action() -> None:
    busy, quiet = summarize(storm_set(), [HUB, QUIET])
    assert (busy.waiting, busy.in_flush, busy.settling, busy.total) == (2, 2, 1, 5)
    assert busy.by_action == {"disable": 4, "delete": 1}
    assert quiet.total == 0


def test_the_text_names_every_hub_and_the_total() -> None:
    text = render(summarize(storm_set(), [HUB, QUIET]))
    assert f"{HUB}: 2 waiting, 2 in a flush, 1 settling (delete 1, disable 4)\n" in text
    assert f"{QUIET}: 0 waiting, 0 in a flush, 0 settling\n" in text
    assert text.endswith("5 hub steps pending in all\n")
