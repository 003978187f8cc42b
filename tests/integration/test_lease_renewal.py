"""Lease renewal against the Table journal on Azurite, in real time: a throttled in-process purge that lasts
several times the lease's ttl keeps the target, and a second instance (its own journal client on the same
tables) never gets it until the purge ends (docs/reliability.md, "lease renewal").

The hub and DPS are hand-written fakes (the ports): what is under test is the lease row in Table storage,
its ETag-conditional take-over and the renewal, not the IoT SDKs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from devhost.azurite import AzuriteHandle
from shared.adapters.journal_tables import TableJournal
from shared.plan import StepKind
from tests.fakes import FakeDeviceRegistries, FakeDeviceRegistry, FakeProvisioningService
from tests.support.azurite_fixtures import unique_prefix
from unprovision.engine import lease
from unprovision.group.inprocess import GroupWork, purge_group
from unprovision.throttle import HubBudget, InMemoryRateLimiter

TTL = 1.5  # seconds; the purge below takes about 4 s


@pytest.fixture
def two_instances(azurite: AzuriteHandle) -> Iterator[tuple[TableJournal, TableJournal]]:
    """Two journal clients on the same tables, as two Function instances have."""
    prefix = unique_prefix()
    first = TableJournal.from_connection_string(azurite.connection_string, prefix=prefix)
    second = TableJournal.from_connection_string(azurite.connection_string, prefix=prefix)
    yield first, second
    first.drop_tables()


def test_a_throttled_purge_longer_than_the_ttl_keeps_its_table_lease_against_another_instance(
    two_instances: tuple[TableJournal, TableJournal],
) -> None:
    table_journal, rival = two_instances
    dps, registries = FakeProvisioningService(), FakeDeviceRegistries()
    dps.add_group("grp-1")
    hub = registries.add(FakeDeviceRegistry("hub-a.example"))
    for n in range(300):
        dps.add_registration(f"dev-{n:03d}", "hub-a.example", group_id="grp-1")
        hub.add_device(f"dev-{n:03d}")
    # 3,000 ops/min, burst 100: the first 100 devices at once, then one 100-device call every 2 s
    work = GroupWork(limiter=InMemoryRateLimiter(default=HubBudget(ops_per_minute=3000, burst=100)),
                     max_in_flight=1)
    rival_wins: list[float] = []
    tries: list[float] = []
    done = threading.Event()

    def another_instance() -> None:
        while not done.wait(0.3):
            tries.append(time.monotonic())
            if rival.claim_target("grp-1", "rival", TTL):
                rival_wins.append(time.monotonic())

    thread = threading.Thread(target=another_instance)
    started = time.monotonic()
    with lease.held(table_journal, "grp-1", ttl=TTL) as held:
        thread.start()
        result = purge_group("evt-1", "grp-1", StepKind.GROUP_DEVICES_DISABLED, dps=dps,
                             registries=registries, work=work)
        held.check()
        # The rival stops trying before the release: a claim of its in flight at the release would win it,
        # rightly, and say nothing about the purge.
        done.set()
        thread.join()
    elapsed = time.monotonic() - started
    assert result.total.changed == 300
    assert elapsed > 2 * TTL, elapsed
    assert len(tries) >= 6
    assert rival_wins == [], "another instance took the target during the purge"
    assert held.renewals >= 3
    assert rival.claim_target("grp-1", "rival", TTL), "released at the end"
