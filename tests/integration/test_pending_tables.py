"""The ``PendingHubSteps`` contract over both stores (memory; Table storage on Azurite), flush requests
included, and how a joining step treats another event's entry on the same device through each store.

250 entries cross the Table store's 100-entity transaction chunks, so the all-or-nothing chunk and its
one-by-one fallback are both exercised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from devhost.azurite import AzuriteHandle
from shared.adapters.journal_memory import InMemoryJournal
from shared.adapters.pending_memory import InMemoryPendingHubSteps
from shared.adapters.pending_tables import TablePendingHubSteps
from shared.errors import UnprovisionError
from shared.lifecycle import EventStatus
from shared.ports import PendingHubStep, StepRecord
from tests.fakes import RecordingWorkQueue
from tests.integration.journal_contract import START, ManualClock
from tests.support.azurite_fixtures import unique_prefix
from unprovision.storm import coalesce
from unprovision.throttle import InMemoryRateLimiter

HUB = "hub-1.azure-devices.net"
OTHER = "hub-2.azure-devices.net"


@pytest.fixture(params=["memory", "tables"])
def pending(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryPendingHubSteps()
        return
    azurite: AzuriteHandle = request.getfixturevalue("azurite")
    store = TablePendingHubSteps.from_connection_string(azurite.connection_string, prefix=unique_prefix())
    yield store
    with contextlib.suppress(UnprovisionError):
        store.drop_table()


def step(device: str, event: str = "ev-1", *, hub: str = HUB, reason: str | None = "lost") -> PendingHubStep:
    return PendingHubStep(hub=hub, device_id=device, event_id=event, step_index=2, action="disable",
                          reason=reason)


def test_add_round_trips_and_returns_the_existing_entry(pending: Any) -> None:
    added = pending.add(step("d1", reason=None))
    assert added.claim is None
    assert added.etag
    assert added.reason is None
    assert pending.get(HUB, "d1") == added
    again = pending.add(step("d1", "ev-2"))
    assert again == added
    assert again.event_id == "ev-1"
    assert pending.get(HUB, "nobody") is None


def journal_with(event_id: str, *, finished: bool) -> InMemoryJournal:
    journal = InMemoryJournal()
    journal.begin(event_id, event_type="lost", target="d1", source="tracker", correlation_id="c", plan={})
    journal.record_step(event_id, StepRecord(2, "HubIdentityDisabled", "d1", "skipped", hub=HUB,
                                             after=coalesce.PENDING_AFTER))
    if finished:
        journal.finish(event_id, EventStatus.COMPLETED)
    return journal


def test_a_step_joining_where_a_killed_flush_left_a_finished_events_entry_replaces_it(pending: Any) -> None:
    left = pending.claim([pending.add(step("d1", "ev-1"))], "flush-killed")
    storm = coalesce.Storm(pending=pending, queue=RecordingWorkQueue(), limiter=InMemoryRateLimiter())
    joined = coalesce.join(storm, step("d1", "ev-2"), journal_with("ev-1", finished=True))
    assert (joined.event_id, joined.claim) == ("ev-2", None)
    assert pending.get(HUB, "d1") == joined
    assert pending.remove(left) == 0  # the killed flush's entry is gone: its late remove changes nothing


def test_a_step_joining_where_an_unfinished_events_entry_is_in_a_flush_waits(pending: Any) -> None:
    pending.claim([pending.add(step("d1", "ev-1"))], "flush-running")
    storm = coalesce.Storm(pending=pending, queue=RecordingWorkQueue(), limiter=InMemoryRateLimiter())
    with pytest.raises(coalesce.EarlierStepInFlight):
        coalesce.join(storm, step("d1", "ev-2"), journal_with("ev-1", finished=False))
    assert pending.get(HUB, "d1").event_id == "ev-1"  # type: ignore[union-attr]


def test_awkward_device_ids_round_trip_and_stay_distinct_by_case(pending: Any) -> None:
    ids = ["a?b", "A?b", "x:y=z@w$", "d'q#%~"]
    added = {d: pending.add(step(d, f"ev-{n}")) for n, d in enumerate(ids)}
    for d in ids:
        got = pending.get(HUB.upper(), d)
        assert got == added[d]
        assert got.device_id == d
    assert sorted(s.device_id for s in pending.entries(HUB)) == sorted(ids)
    assert pending.get(HUB, "a?B") is None


def test_claim_is_conditional_and_has_waiting_ignores_claimed(pending: Any) -> None:
    a, b = pending.add(step("a")), pending.add(step("b"))
    other = pending.add(step("c", hub=OTHER))
    assert pending.has_waiting(HUB)
    assert pending.has_waiting(OTHER)
    (taken,) = pending.claim([a], "flush-1")
    assert taken.claim == "flush-1"
    assert taken.etag != a.etag
    assert pending.get(HUB, "a") == taken
    assert pending.claim([a, b], "flush-2") == [replace(b, claim="flush-2", etag=pending.get(HUB, "b").etag)]
    assert not pending.has_waiting(HUB)
    assert pending.has_waiting(OTHER)
    assert [s.device_id for s in pending.claim([other], "flush-3")] == ["c"]
    assert not pending.has_waiting(OTHER)


def test_remove_is_conditional(pending: Any) -> None:
    a, b = pending.add(step("a")), pending.add(step("b"))
    (taken,) = pending.claim([a], "flush-1")
    assert pending.remove([a, b]) == 1  # ``a`` is stale
    assert pending.remove([b]) == 0  # already gone
    assert pending.remove([taken]) == 1
    assert list(pending.entries(HUB)) == []


def test_250_entries_one_changed_after_the_read_249_claimed(pending: Any) -> None:
    for n in range(250):
        pending.add(step(f"dev-{n:03d}", f"ev-{n}"))
    read = list(pending.entries(HUB))
    assert len(read) == 250
    changed = read[150]  # in the second chunk of 100
    pending.claim([changed], "settler")
    claimed = pending.claim(read, "flush-1")
    assert len(claimed) == 249
    assert changed.device_id not in {s.device_id for s in claimed}
    stored = {s.device_id: s for s in pending.entries(HUB)}
    assert all(stored[s.device_id] == s for s in claimed)  # the etags given back are the stored ones
    assert stored[changed.device_id].claim == "settler"
    assert not pending.has_waiting(HUB)
    assert pending.remove(list(stored.values())) == 250
    assert list(pending.entries(HUB)) == []
    assert pending.get(HUB, "dev-000") is None


def test_a_claim_across_hubs_takes_each_hub_entries(pending: Any) -> None:
    read = [pending.add(step(f"d{n}", hub=HUB if n % 2 else OTHER)) for n in range(10)]
    assert len(pending.claim(read + read[:3], "flush-1")) == 10  # repeats are taken once
    assert pending.remove(read) == 0  # all stale now
    assert pending.remove(list(pending.entries(HUB)) + list(pending.entries(OTHER))) == 10


# -- flush requests ---------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "tables"])
def timed(request: pytest.FixtureRequest) -> Iterator[tuple[Any, ManualClock]]:
    """A store on a clock the test moves (the memory store counts seconds, the Table store stamps times)."""
    clock = ManualClock(START)
    if request.param == "memory":
        def seconds() -> float:
            return (clock.now - START).total_seconds()

        yield InMemoryPendingHubSteps(clock=seconds), clock
        return
    azurite: AzuriteHandle = request.getfixturevalue("azurite")
    store = TablePendingHubSteps.from_connection_string(azurite.connection_string, prefix=unique_prefix(),
                                                        clock=clock)
    yield store, clock
    with contextlib.suppress(UnprovisionError):
        store.drop_table()


def test_only_the_first_request_for_a_flush_sends_until_a_flush_clears_it(timed: Any) -> None:
    store, _clock = timed
    assert store.request_flush(HUB, 60)
    assert not store.request_flush(HUB, 60)
    assert store.request_flush(OTHER, 60)  # per hub
    store.clear_flush_request(HUB)
    store.clear_flush_request(HUB)  # clearing twice is fine
    assert store.request_flush(HUB, 60)


def test_a_stale_flush_request_is_sent_again_once(timed: Any) -> None:
    store, clock = timed
    assert store.request_flush(HUB, 60)
    clock.advance(59)
    assert not store.request_flush(HUB, 60)
    clock.advance(2)
    assert store.request_flush(HUB, 60)  # its sender may have died before sending
    assert not store.request_flush(HUB, 60)


def test_a_flush_request_is_not_an_entry_of_the_set(timed: Any) -> None:
    store, _clock = timed
    store.add(step("d1"))
    assert store.request_flush(HUB, 60)
    assert [s.device_id for s in store.entries(HUB)] == ["d1"]
    assert store.has_waiting(HUB)
    (only,) = store.entries(HUB)
    store.claim([only], "flush-1")
    assert not store.has_waiting(HUB)


def test_a_refusal_naming_no_entry_falls_back_to_one_by_one(
    pending: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.adapters.pending_tables._failed_index", lambda exc: None)
    read = [pending.add(step(f"d{n:02d}")) for n in range(30)]
    pending.claim([read[3], read[17]], "settler")
    assert len(pending.claim(read, "flush-1")) == 28
    assert pending.remove(read) == 0
    assert pending.remove(list(pending.entries(HUB))) == 30
