"""The per-target lease is renewed while a long in-process group purge holds it, and fences the purge's
writes once it is lost (unprovision/engine/lease.py; docs/reliability.md, "lease renewal").

Before renewal, the lease (ttl 60 s) simply lapsed during a purge that S1 paces at 100 devices a minute per
hub, so another instance could take the target mid-purge. Time here is a ``FakeClock`` shared by the
limiter, the lease and the in-memory journal, so five fake minutes of throttled purge take milliseconds;
the background renewer is tested on wall time with a sub-second ttl.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.journal_memory import InMemoryJournal
from shared.errors import Transient
from shared.plan import StepKind
from tests.fakes import FakeClock, FakeDeviceRegistries, FakeDeviceRegistry, FakeProvisioningService
from unprovision.engine import lease
from unprovision.group.inprocess import GroupWork, Progress, purge_group
from unprovision.throttle import HubBudget, InMemoryRateLimiter

HUB = "hub-a.example"
GROUP = "fleet-grp"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Fleet:
    """One S1 hub (100 identity ops a minute) holding every device of one group; one clock for all."""

    def __init__(self, size: int) -> None:
        self.clock = FakeClock()
        self.journal = InMemoryJournal(clock=lambda: EPOCH + timedelta(seconds=self.clock()))
        self.dps = FakeProvisioningService()
        self.dps.add_group(GROUP)
        self.registries = FakeDeviceRegistries()
        self.hub = self.registries.add(FakeDeviceRegistry(HUB))
        for n in range(size):
            self.dps.add_registration(f"dev-{n:04d}", HUB, group_id=GROUP)
            self.hub.add_device(f"dev-{n:04d}")
        limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=100, burst=100), clock=self.clock)
        # one call in flight: the fake clock sums concurrent sleeps, so a single lane keeps time exact
        self.work = GroupWork(limiter=limiter, sleep=self.clock.sleep, max_in_flight=1)

    def held(self, ttl: float = 60.0) -> Any:
        return lease.held(self.journal, GROUP, ttl=ttl, clock=self.clock, sleep=self.clock.sleep,
                          renew_in_background=False)  # the purge's own beats only: deterministic

    def purge(self, on_progress: Any = None) -> Any:
        return purge_group("evt-1", GROUP, StepKind.GROUP_DEVICES_DISABLED, dps=self.dps,
                           registries=self.registries, work=self.work, progress=on_progress)


def test_a_purge_five_times_longer_than_the_ttl_keeps_its_lease_and_a_rival_never_gets_it() -> None:
    fleet = Fleet(500)
    rival_wins: list[float] = []

    def rival_tries(_progress: Progress) -> None:  # another instance, after every bulk call
        if fleet.journal.claim_target(GROUP, "rival", 60):
            rival_wins.append(fleet.clock())

    started = fleet.clock()
    with fleet.held(ttl=60) as held:
        result = fleet.purge(rival_tries)
    elapsed = fleet.clock() - started
    assert result.total.changed == 500
    assert elapsed >= 4 * 60, "S1 paces 500 devices over at least four minutes"
    assert rival_wins == [], "the lease lapsed during the purge"
    assert held.renewals >= elapsed // 60 * 2, (held.renewals, elapsed)
    assert fleet.journal.claim_target(GROUP, "rival", 60), "released when the purge ended"


def test_a_purge_whose_lease_was_taken_over_stops_before_its_next_bulk_call() -> None:
    fleet = Fleet(500)
    calls: list[int] = []

    def lapse_after_two_calls(progress: Progress) -> None:
        calls.append(progress.done)
        if len(calls) == 2:  # as if this instance had stalled: the lease lapsed and a rival took it
            fleet.clock.advance(61)
            assert fleet.journal.claim_target(GROUP, "rival", 600)

    with pytest.raises(lease.LeaseLost) as lost, fleet.held(ttl=60):
        fleet.purge(lapse_after_two_calls)
    assert "lease on fleet-grp lost" in str(lost.value)
    assert "stopped before the next change" in str(lost.value)
    assert calls == [100, 200]
    assert sum(1 for d in fleet.hub.devices.values() if d.status.value == "disabled") == 200
    assert not fleet.journal.claim_target(GROUP, "third", 60), "the rival's lease is left alone"


def test_a_lease_not_renewed_within_its_ttl_fences_writes_even_when_nobody_took_it() -> None:
    fleet = Fleet(1)
    real_claim = fleet.journal.claim_target

    def storage_down(target: str, holder: str, ttl: float) -> bool:
        raise Transient("journal unreachable")

    with fleet.held(ttl=60) as held:
        fleet.journal.claim_target = storage_down  # type: ignore[method-assign]
        for _ in range(2):
            fleet.clock.advance(25)
            held.beat()  # fails, logged; the lease may still be ours
            held.check()
        fleet.clock.advance(25)
        held.beat()
        with pytest.raises(lease.LeaseLost, match="not renewed for 60 s"):
            held.check()
        fleet.journal.claim_target = real_claim  # type: ignore[method-assign]
    assert held.renewals == 0


def test_the_background_renewer_holds_the_lease_on_wall_time_while_nothing_else_runs() -> None:
    """A blocking call (an import job, an SDK call retrying) makes no beats: the thread renews."""
    journal = InMemoryJournal()
    rival_wins = []
    with lease.held(journal, "dev-1", ttl=0.6) as held:
        for _ in range(6):
            time.sleep(0.25)
            if journal.claim_target("dev-1", "rival", 0.6):
                rival_wins.append(True)
        held.check()
    assert rival_wins == []
    assert held.renewals >= 3
    assert journal.claim_target("dev-1", "rival", 0.6)


def test_no_renewal_lands_after_the_lease_is_released() -> None:
    fleet = Fleet(1)
    with fleet.held(ttl=60) as held:
        pass
    assert fleet.journal.claim_target(GROUP, "rival", 60)
    fleet.journal.release_target(GROUP, "rival")
    fleet.clock.advance(30)
    held.beat()  # a late beat from a thread that has not noticed the end
    assert held.renewals == 0
    assert fleet.journal.claim_target(GROUP, "other", 60), "the released lease was not claimed back"
