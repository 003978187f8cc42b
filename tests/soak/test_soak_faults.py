"""Soak: a mix of lifecycle events through the real queue trigger while the emulator injects faults (5% 5xx,
5% 429, 1% dropped connections) and the local host is SIGKILLed and restarted three times at random moments.

Every message must end applied (journal ``completed``/``refused`` and the fleet in the state its event
implies), rejected (a rejection record naming its eventId and the field), or poisoned (its body in
``<queue>-poison``). Nothing lost, nothing applied twice: per event and step at most one journal attempt says
``done``, and the emulator's success counters of the mutating calls equal the number of changes expected.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from emulator.testing import EmulatorHandle
from tests.soak.checks import find_secrets, fleet_state, host_loop_problems, secret_values, state_problems
from tests.soak.conftest import AppConfig
from tests.soak.hostproc import FUNCTION_KEY, MASTER_KEY, HostProcess
from tests.soak.settle import progress, queue, send_all, wait_settled
from tests.soak.soakfleet import Expected, mixed_events, seed_fleet
from unprovision.wiring import Services

FAULTS = {"rate5xx": 0.05, "rate429": 0.05, "rateDrop": 0.01, "retryAfter": 1}


@dataclass(frozen=True)
class Size:
    devices: int
    events: int
    kills: int
    settle_timeout: float


CI = Size(devices=150, events=150, kills=3, settle_timeout=150)
FULL = Size(devices=1100, events=1000, kills=3, settle_timeout=1500)


def _successes(counters: dict[str, Any], method: str, pattern: str, status: str) -> int:
    """Successful calls of one operation, summed over every service (DPS and each hub)."""
    total = 0
    for operations in counters["calls"].values():
        for operation, statuses in operations.items():
            if operation.startswith(method + " ") and pattern in operation:
                total += int(statuses.get(status, 0))
    return total


def _faults_injected(counters: dict[str, Any]) -> Counter[str]:
    """Answers the fault knob produced: 503, 429, and dropped connections (status ``0``)."""
    seen: Counter[str] = Counter()
    for operations in counters["calls"].values():
        for statuses in operations.values():
            for status in ("0", "429", "503"):
                seen[status] += int(statuses.get(status, 0))
    return seen


def _kill_and_restart(host: HostProcess, rng: random.Random, kills: int, window: float) -> list[float]:
    """Kill at ``kills`` random moments within ``window`` seconds of the start; returns the moments."""
    moments = sorted(rng.uniform(1.0, window) for _ in range(kills))
    start = time.monotonic()
    for moment in moments:
        time.sleep(max(0.0, moment - (time.monotonic() - start)))
        host.kill()
        host.start()
    return moments


@pytest.mark.parametrize("size", [
    pytest.param(CI, marks=pytest.mark.soak, id="ci"),
    pytest.param(FULL, marks=[pytest.mark.soak_full, pytest.mark.timeout(3600)], id="full"),
])
def test_every_event_ends_applied_rejected_or_poisoned_despite_faults_and_kills(
    size: Size, clean_emulator: EmulatorHandle, app_config: AppConfig, app_services: Services,
    host_process: HostProcess,
) -> None:
    run = "soak-" + uuid.uuid4().hex[:8]
    rng = random.Random(run)
    devices = seed_fleet(clean_emulator, size.devices, run)
    expected = mixed_events(devices, size.events, seed=rng.randrange(1 << 30), run=run)
    lifecycle = queue(app_config.storage, app_config.lifecycle_queue)
    poison = queue(app_config.storage, app_config.lifecycle_queue + "-poison")
    clean_emulator.admin("PUT", "/faults", json=FAULTS)

    host_process.start()
    send_all(lifecycle, expected)
    moments = _kill_and_restart(host_process, rng, size.kills, window=max(8.0, size.events / 15))

    def check() -> Any:
        return progress(app_config.storage, app_config.prefix, app_services.journal, poison, expected)

    state = wait_settled(check, size.settle_timeout)
    clean_emulator.admin("PUT", "/faults", json={})
    counters = clean_emulator.admin("GET", "/counters")
    host_process.stop()
    assert host_process.starts == size.kills + 1, f"kills at {moments}"
    assert not state.unsettled, f"lost or stuck: {state.unsettled[:20]}"
    _assert_outcomes(expected, state)
    _assert_fleet(clean_emulator, expected, state)
    _assert_applied_once(expected, state, counters)
    injected = _faults_injected(counters)
    assert min(injected["0"], injected["429"], injected["503"]) > 0, injected
    print(f"soak {size}: kills at {[round(m, 1) for m in moments]} s, faults {dict(injected)}, "
          f"poisoned valid events {sorted(state.poisoned_ids)}")
    log = host_process.output()
    assert host_loop_problems(log) == []  # only retryable function errors, logged and redelivered
    assert find_secrets(log, secret_values(clean_emulator, [FUNCTION_KEY, MASTER_KEY])) == []


def _assert_outcomes(expected: list[Expected], state: Any) -> None:
    wrong = []
    for exp in expected:
        if exp.kind == "garbage" or exp.event_id in state.poisoned_ids:
            continue
        if exp.status == "rejected":
            errors = state.rejected.get(exp.event_id)
            if not errors or not all(e.get("field") and e.get("reason") for e in errors):
                wrong.append(f"{exp.event_id} ({exp.kind}): rejection {errors!r}")
        else:
            got = state.rows.headers.get(exp.event_id, {}).get("Status")
            if got != exp.status:
                error = state.rows.headers.get(exp.event_id, {}).get("Error")
                wrong.append(f"{exp.event_id} ({exp.kind}): {got} ({error}), expected {exp.status}")
    assert wrong == []
    # valid events may be poisoned only after five failed deliveries; each must still be journaled
    for event_id in state.poisoned_ids:
        assert event_id in state.rows.headers or event_id in state.rejected, event_id
    garbage = sum(1 for e in expected if e.kind == "garbage")
    assert state.poison_count == garbage + len(state.poisoned_ids)


def _assert_fleet(emu: EmulatorHandle, expected: list[Expected], state: Any) -> None:
    applied = [e for e in expected if e.event_id not in state.poisoned_ids]
    assert state_problems(applied, fleet_state(emu)) == []


def _assert_applied_once(expected: list[Expected], state: Any, counters: dict[str, Any]) -> None:
    assert state.rows.done_twice() == []
    applied = Counter(e.kind for e in expected
                      if e.status == "completed" and e.event_id not in state.poisoned_ids)
    # one enrollment PUT (disable) per temporary revocation, one DELETE per permanent one, in DPS; the same in
    # the hubs (a disable is a conditional PUT of the identity, a delete answers 204)
    assert _successes(counters, "PUT", "enrollments", "200") == applied["temporary"]
    assert _successes(counters, "DELETE", "enrollments", "204") == applied["permanent"]
    assert _successes(counters, "PUT", "devices", "200") == applied["temporary"]
    assert _successes(counters, "DELETE", "devices", "204") == applied["permanent"]


def test_host_log_check_tells_retryable_function_errors_from_crashes() -> None:
    """The log check above must pass the host's designed retry path and catch anything else."""
    retryable = ("2026-01-01 00:00:00,000 ERROR devhost.queue: function lifecycle_queue failed on message m1 "
                 "(dequeue count 1)\nTraceback (most recent call last):\n  File \"x\", line 1\n"
                 "shared.errors.Throttled: hub get device: 429")
    crash = retryable.replace("shared.errors.Throttled", "KeyError")
    loop = "2026-01-01 00:00:01,000 ERROR devhost.queue: receive loop died\nTraceback (most recent call):"
    assert host_loop_problems(retryable) == []
    assert host_loop_problems(retryable, allow_retryable=False) != []
    assert host_loop_problems(crash) != []
    assert host_loop_problems(loop) != []
    assert host_loop_problems("Traceback (most recent call last):\n  boom") != []
