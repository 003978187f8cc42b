"""Service round trips of one single-device event, counted where they land: at the emulator.

The budget (docs/engine.md, docs/adapters.md) is 6 with a warm group cache: registration GET, enrollment
GET, enrollment PUT (reusing that read's ETag), confirming enrollment GET (a real read), device GET and
device PUT (reusing that read's etag). The journal is the in-memory one: it is not a service round trip.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.journal_memory import InMemoryJournal
from tests.integration import engine_fleet as fleet
from unprovision.engine.inventory import GroupCache

BUDGET = 6


def service_calls(emu: Any) -> dict[str, int]:
    """Answered service calls per ``service METHOD /pattern`` (the admin API is not a service)."""
    out: dict[str, int] = {}
    for service, operations in fleet.counters(emu).items():
        if service == "admin":
            continue
        for operation, by_status in operations.items():
            out[f"{service} {operation}"] = sum(by_status.values())
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {op: n - before.get(op, 0) for op, n in after.items() if n != before.get(op, 0)}


def test_a_lost_symmetric_key_device_costs_at_most_six_service_calls(clean_emulator: Any) -> None:
    emu = clean_emulator
    device = fleet.individual_device(emu, "rt-1", hub=0)
    hub = fleet.assigned_hub(emu, "rt-1")
    cache = GroupCache()
    engine = fleet.engine(emu, InMemoryJournal(), group_cache=cache)
    cache.groups(engine.dps)  # warm: the group list is read once per process and TTL
    before = service_calls(emu)
    outcome = engine.apply(fleet.event("e-rt", "lost", reg_id="rt-1"))
    spent = delta(service_calls(emu), before)
    assert outcome.status == "completed", outcome.error
    assert [(s.kind, s.outcome) for s in outcome.steps] == [("EnrollmentDisabled", "done"),
                                                            ("HubIdentityDisabled", "done")]
    assert sum(spent.values()) <= BUDGET, spent
    writes = {op: n for op, n in spent.items() if " PUT " in op}
    assert sorted(writes.values()) == [1, 1], spent  # one enrollment write, one device write: no 412
    confirm_and_read = sum(n for op, n in spent.items() if op.startswith("dps GET /enrollments/"))
    assert confirm_and_read == 2, spent  # the inventory read and the real confirming re-read
    assert fleet.hub_status(emu, "rt-1", hub) == "disabled"
    assert not fleet.can_send(emu, device, hub)
