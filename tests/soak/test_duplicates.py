"""At-least-once delivery: every event delivered two or three times gives the same end state as once, and each
change is applied once (one ``done`` attempt per step, emulator success counters equal to the changes).

Two paths: through the queue trigger under the local host (copies interleaved in the queue, up to 16 in
flight, so copies of one event do run concurrently), and in-process with three threads handing the same body
to the entry point at the same instant. A retryable error is handed back to the caller, as the host would
redeliver it; the threads do the same.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from typing import Any

import pytest

from emulator.testing import EmulatorHandle
from tests.soak.checks import fleet_state, host_loop_problems, journal_rows, state_problems
from tests.soak.conftest import AppConfig
from tests.soak.hostproc import HostProcess
from tests.soak.settle import progress, queue, send_all, wait_settled
from tests.soak.soakfleet import Expected, mixed_events, seed_fleet
from unprovision.outcomes import classify
from unprovision.service import handle_event_body
from unprovision.wiring import Services


def _changes(counters: dict[str, Any]) -> Counter[str]:
    """Successful mutating calls by kind, over DPS and every hub."""
    seen: Counter[str] = Counter()
    for operations in counters["calls"].values():
        for operation, statuses in operations.items():
            method, _, path = operation.partition(" ")
            resource = "enrollments" if "enrollments" in path else "devices" if "devices" in path else None
            if resource and method in {"PUT", "DELETE"}:
                seen[f"{method} {resource}"] += int(statuses.get("200" if method == "PUT" else "204", 0))
    return seen


def _expected_changes(expected: list[Expected]) -> Counter[str]:
    kinds = Counter(e.kind for e in expected if e.status == "completed")
    return Counter({"PUT enrollments": kinds["temporary"], "PUT devices": kinds["temporary"],
                    "DELETE enrollments": kinds["permanent"], "DELETE devices": kinds["permanent"]})


def _valid_only(expected: list[Expected]) -> list[Expected]:
    return [e for e in expected if e.kind in {"temporary", "permanent", "found", "unknown"}]


@pytest.mark.soak
def test_events_delivered_two_or_three_times_through_the_queue_apply_once(
    clean_emulator: EmulatorHandle, app_config: AppConfig, app_services: Services, host_process: HostProcess,
) -> None:
    run = "dup-" + uuid.uuid4().hex[:8]
    rng = random.Random(run)
    devices = seed_fleet(clean_emulator, 60, run)
    expected = mixed_events(devices, 60, seed=rng.randrange(1 << 30), run=run)
    copies = [e for e in expected for _ in range(rng.choice((2, 3)))]
    rng.shuffle(copies)
    lifecycle = queue(app_config.storage, app_config.lifecycle_queue)
    poison = queue(app_config.storage, app_config.lifecycle_queue + "-poison")
    host_process.start()
    send_all(lifecycle, copies)

    def check() -> Any:
        garbage_copies = sum(1 for e in copies if e.kind == "garbage")
        state = progress(app_config.storage, app_config.prefix, app_services.journal, poison, expected)
        if state.poison_count < garbage_copies:
            state.unsettled.append("garbage copies not yet poisoned")
        return state

    state = wait_settled(check, timeout=120)
    host_process.stop()
    assert not state.unsettled, state.unsettled[:20]
    assert host_loop_problems(host_process.output()) == []
    assert not state.poisoned_ids, "no valid event may be poisoned when nothing fails"
    for exp in expected:
        if exp.status in {"completed", "refused"}:
            assert state.rows.headers[exp.event_id]["Status"] == exp.status, exp
        elif exp.status == "rejected":
            assert state.rejected[exp.event_id], exp
    assert state_problems(expected, fleet_state(clean_emulator)) == []
    assert state.rows.done_twice() == []
    counters = clean_emulator.admin("GET", "/counters")
    assert _changes(counters) == _expected_changes(expected)


def _deliver_until_settled(body: str, services: Services, barrier: threading.Barrier,
                           statuses: list[str], errors: list[BaseException]) -> None:
    barrier.wait()
    for _ in range(10):  # the host's redelivery, compressed
        try:
            statuses.append(handle_event_body(body, services).status)
        except Exception as exc:  # noqa: BLE001 - retryable errors are redelivered; others are failures
            if not classify(exc).retry:
                errors.append(exc)
                return
            continue
        return
    errors.append(RuntimeError(f"not settled after 10 deliveries: {body[:80]}"))


@pytest.mark.soak
def test_three_concurrent_deliveries_of_each_event_change_the_fleet_once(
    clean_emulator: EmulatorHandle, app_config: AppConfig, app_services: Services,
) -> None:
    run = "par-" + uuid.uuid4().hex[:8]
    devices = seed_fleet(clean_emulator, 24, run)
    expected = _valid_only(mixed_events(devices, 30, seed=7, run=run))
    statuses: dict[str, list[str]] = {e.event_id: [] for e in expected}
    errors: list[BaseException] = []
    for exp in expected:
        barrier = threading.Barrier(3)
        threads = [threading.Thread(target=_deliver_until_settled,
                                    args=(exp.body, app_services, barrier, statuses[exp.event_id], errors))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert errors == []
    for exp in expected:
        # every delivery answers with the event's one outcome (a copy that lost the race may see in_progress
        # only if it raised, which is redelivered above)
        assert set(statuses[exp.event_id]) == {exp.status}, (exp, statuses[exp.event_id])
    assert state_problems(expected, fleet_state(clean_emulator)) == []
    rows = journal_rows(app_config.storage, app_config.prefix)
    assert rows.done_twice() == []
    assert {e.event_id for e in expected} == set(rows.headers)
    assert _changes(clean_emulator.admin("GET", "/counters")) == _expected_changes(expected)
