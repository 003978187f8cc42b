"""``InMemoryPendingHubSteps``: the reference semantics of the ``PendingHubSteps`` port."""

from __future__ import annotations

import threading
from dataclasses import replace

from shared.adapters.pending_memory import InMemoryPendingHubSteps
from shared.ports import PendingHubStep

HUB = "hub-1.azure-devices.net"


def step(device: str, event: str = "ev-1", *, hub: str = HUB, reason: str | None = None) -> PendingHubStep:
    return PendingHubStep(hub=hub, device_id=device, event_id=event, step_index=1, action="disable",
                          reason=reason)


def test_add_stores_an_unclaimed_entry_with_an_etag() -> None:
    store = InMemoryPendingHubSteps()
    added = store.add(replace(step("d1", reason="lost"), claim="someone", etag="x"))
    assert added.claim is None
    assert added.etag is not None
    assert added.reason == "lost"
    assert store.get(HUB, "d1") == added


def test_add_of_a_known_device_returns_the_existing_entry_unchanged() -> None:
    store = InMemoryPendingHubSteps()
    first = store.add(step("d1", "ev-1"))
    again = store.add(step("d1", "ev-2"))
    assert again == first
    assert again.event_id == "ev-1"


def test_claim_takes_entries_read_and_gives_new_etags() -> None:
    store = InMemoryPendingHubSteps()
    a, b = store.add(step("a")), store.add(step("b"))
    claimed = store.claim([a, b], "flush-1")
    assert [(s.device_id, s.claim) for s in claimed] == [("a", "flush-1"), ("b", "flush-1")]
    assert all(new.etag != old.etag for new, old in zip(claimed, (a, b), strict=True))
    assert store.get(HUB, "a") == claimed[0]


def test_a_stale_etag_is_not_claimed() -> None:
    store = InMemoryPendingHubSteps()
    a, b = store.add(step("a")), store.add(step("b"))
    store.claim([a], "flush-1")
    claimed = store.claim([a, b], "flush-2")  # ``a`` changed since it was read
    assert [s.device_id for s in claimed] == ["b"]
    assert store.get(HUB, "a").claim == "flush-1"  # type: ignore[union-attr]


def test_a_removed_entry_or_one_never_stored_is_not_claimed() -> None:
    store = InMemoryPendingHubSteps()
    a = store.add(step("a"))
    assert store.remove([a]) == 1
    assert store.claim([a, step("never")], "flush-1") == []


def test_remove_is_conditional_on_the_etag() -> None:
    store = InMemoryPendingHubSteps()
    a, b = store.add(step("a")), store.add(step("b"))
    (taken,) = store.claim([a], "flush-1")
    assert store.remove([a, b]) == 1  # ``a`` is stale: only ``b`` goes
    assert store.get(HUB, "b") is None
    assert store.remove([taken]) == 1
    assert list(store.entries(HUB)) == []


def test_has_waiting_ignores_claimed_entries() -> None:
    store = InMemoryPendingHubSteps()
    assert not store.has_waiting(HUB)
    a = store.add(step("a"))
    assert store.has_waiting(HUB.upper())
    store.claim([a], "flush-1")
    assert not store.has_waiting(HUB)
    assert [s.device_id for s in store.entries(HUB)] == ["a"]


def test_device_ids_are_case_sensitive_and_hubs_are_not() -> None:
    store = InMemoryPendingHubSteps()
    lower = store.add(step("dev-a", "ev-1"))
    upper = store.add(step("DEV-A", "ev-2", hub=HUB.upper()))
    assert lower.event_id == "ev-1"
    assert upper.event_id == "ev-2"
    assert store.get(HUB.upper(), "dev-a") == lower
    assert store.get(HUB, "DEV-A") == upper
    assert sorted(s.device_id for s in store.entries(HUB)) == ["DEV-A", "dev-a"]


def test_hubs_are_separate_sets() -> None:
    store = InMemoryPendingHubSteps()
    store.add(step("d1", hub="hub-2.azure-devices.net"))
    assert not store.has_waiting(HUB)
    assert list(store.entries(HUB)) == []


def test_concurrent_claims_take_each_entry_once() -> None:
    store = InMemoryPendingHubSteps()
    read = [store.add(step(f"d{i}")) for i in range(200)]
    results: list[list[PendingHubStep]] = []

    def flush(name: str) -> None:
        results.append(store.claim(read, name))

    threads = [threading.Thread(target=flush, args=(f"flush-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r) for r in results) == 200
