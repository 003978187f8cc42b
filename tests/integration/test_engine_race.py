"""Two instances racing on one device (issue 11, item 3): a ``stolen`` and a ``found`` sent after a ``lost``.

Each event is applied by its own ``Engine`` (own SDK adapters, own ``TableJournal`` client) in its own thread,
both sharing one journal in Azurite, the way two Function instances share the app's storage. The emulator
adds 80 ms to every service call, so both inventory reads land before either write when nothing serialises
them. Without serialisation both read the device as ``lost`` and both complete: the ``found`` re-enables
what the ``stolen`` disabled and the stolen device works again. Whatever order the two take, the device must
end revoked: either ``found`` first (it undoes the ``lost``, then ``stolen`` revokes again) or ``stolen``
first (a theft is one-way, so the plain ``found`` is refused).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devhost.azurite import AzuriteHandle
from shared.adapters.journal_tables import TableJournal
from shared.events import LifecycleEvent
from tests.integration import engine_fleet as fleet
from unprovision.engine.core import Engine
from unprovision.outcomes import Outcome

pytestmark = pytest.mark.slow

LATENCY_MS = 80
ROUNDS = 3  # fresh devices; each round is one race


def instance(emu: Any, azurite: AzuriteHandle, journal: TableJournal) -> Engine:
    """One more app instance: its own adapters and its own client on the shared journal tables."""
    prefix = journal._events.table_name.removesuffix("journal")  # the fixture's own tables
    own = TableJournal.from_connection_string(azurite.connection_string, prefix=prefix, create_tables=False)
    return fleet.engine(emu, own)


def race(engines: list[Engine], *events: LifecycleEvent) -> list[Outcome]:
    """Apply ``events[i]`` with ``engines[i]``, each in its own thread, released at the same instant."""
    start = threading.Barrier(len(events))

    def apply(engine: Engine, event: LifecycleEvent) -> Outcome:
        start.wait(timeout=10)
        return engine.apply(event)

    with ThreadPoolExecutor(max_workers=len(events)) as pool:
        futures = [pool.submit(apply, engine, event) for engine, event in zip(engines, events, strict=True)]
        return [future.result(timeout=120) for future in futures]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_stolen_racing_a_found_after_lost_never_leaves_the_device_enabled(
        clean_emulator: Any, azurite: AzuriteHandle, table_journal: TableJournal, round_: int) -> None:
    emu = clean_emulator
    reg_id = f"race-{round_}"
    device = fleet.individual_device(emu, reg_id, hub=0)
    neighbour = fleet.individual_device(emu, f"race-{round_}-n", hub=0)
    hub = fleet.assigned_hub(emu, reg_id)
    lost = fleet.engine(emu, table_journal).apply(fleet.event(f"e-lost-{round_}", "lost", reg_id=reg_id))
    assert lost.status == "completed", lost.error
    engines = [instance(emu, azurite, table_journal), instance(emu, azurite, table_journal)]
    emu.admin("PUT", "/latency", json={"latencyMs": LATENCY_MS, "jitterMs": 0})
    try:
        stolen, found = race(engines, fleet.event(f"e-stolen-{round_}", "stolen", reg_id=reg_id),
                             fleet.event(f"e-found-{round_}", "found", reg_id=reg_id))
    finally:
        emu.admin("PUT", "/latency", json={"latencyMs": 0, "jitterMs": 0})

    # the device never ends enabled: not in DPS, not in its hub, not from its own side
    assert fleet.enrollment_status(emu, reg_id) == "disabled", (stolen, found)
    assert fleet.hub_status(emu, reg_id, hub) == "disabled", (stolen, found)
    assert not fleet.can_register(emu, device), "the stolen device registers again"
    assert not fleet.can_send(emu, device, hub), "the stolen device sends again"
    assert fleet.can_register(emu, neighbour)
    # and the outcomes are those of one of the two sequential orders
    assert stolen.status == "completed", stolen.error
    assert found.status in ("completed", "refused"), found.error
    if found.status == "completed":  # found went first; stolen, applied after it, had to revoke again
        assert [s.outcome for s in stolen.steps] == ["done"] * len(stolen.steps), stolen.steps
    # both events are recorded as finished in the one shared journal
    statuses = {r.event_id: r.status for r in table_journal.history(reg_id)}
    assert statuses == {f"e-lost-{round_}": "completed", f"e-stolen-{round_}": "completed",
                        f"e-found-{round_}": found.status}
