"""Issue 11's invariants under reused eventIds and racing events on one device, checked at the device
endpoints.

The invariant: a one-way revocation (``stolen``, ``compromised``) is never undone without an authorised
``force``, and an eventId reused with another body is never applied (nor silently dropped). "Undone" is judged
where it matters: can the device itself still register at DPS's device endpoint, and still send to its hub?

Everything goes through the queue trigger's entry point (``service.handle_event_body``) with the app's real
adapters (SDKs → emulator, journal → Azurite). Racing events run in threads, each with its own ``Services``
(own SDK clients, own journal client on the shared tables), the way two Function instances share the app's
storage; a retryable error is handed back and redelivered, as the host would.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from emulator.testing import EmulatorHandle
from tests.integration import engine_fleet as fleet
from tests.soak.conftest import AppConfig, make_services
from unprovision.outcomes import Outcome, classify
from unprovision.service import handle_event_body
from unprovision.wiring import Services

LATENCY_MS = 80  # as in issue 11: both inventory reads land before either write unless events are serialised


def body(event_id: str, type_: str, reg_id: str, **extra: Any) -> str:
    return json.dumps({"eventId": event_id, "type": type_, "registrationId": reg_id,
                       "occurredAt": "2026-01-05T10:00:00Z", "source": "soak-suite", **extra})


def deliver(text: str, services: Services, **options: Any) -> Outcome:
    """One message until it settles: retryable errors are redelivered (the host's redelivery, compressed)."""
    for _ in range(20):
        try:
            return handle_event_body(text, services, **options)
        except Exception as exc:
            if not classify(exc).retry:
                raise
    raise AssertionError(f"not settled after 20 deliveries: {text[:80]}")


def at_once(calls: list[Callable[[], Outcome]]) -> list[Outcome]:
    """Run every call in its own thread, released at the same instant; outcomes in call order."""
    barrier = threading.Barrier(len(calls))
    results: list[Outcome | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert errors == [], errors
    assert all(r is not None for r in results), "a delivery did not finish"
    return [r for r in results if r is not None]


def revoked(emu: EmulatorHandle, device: fleet.Device, hub: str) -> list[str]:
    """What still works for a device that must be revoked (empty when it is revoked everywhere)."""
    problems = []
    enrollment = fleet.enrollment_status(emu, device.registration_id)
    if enrollment != "disabled":
        problems.append(f"{device.registration_id}: enrollment {enrollment}")
    identity = fleet.hub_status(emu, device.registration_id, hub)
    if identity != "disabled":
        problems.append(f"{device.registration_id}: hub identity {identity}")
    if fleet.can_register(emu, device):
        problems.append(f"{device.registration_id} registers at DPS again")
    if fleet.can_send(emu, device, hub):
        problems.append(f"{device.registration_id} sends to its hub again")
    return problems


def working(emu: EmulatorHandle, device: fleet.Device, hub: str) -> list[str]:
    """What is blocked for a device that must work (empty when it registers and sends)."""
    problems = []
    if not fleet.can_register(emu, device):
        problems.append(f"{device.registration_id} cannot register")
    if not fleet.can_send(emu, device, hub):
        problems.append(f"{device.registration_id} cannot send")
    return problems


def refusals(services: Services, event_id: str, field: str) -> list[Any]:
    return [r for r in services.journal.iter_rejections(event_id)
            if any(e["field"] == field for e in r.errors)]


@pytest.mark.soak
def test_reused_event_ids_are_refused_as_conflicts_and_never_applied(
    clean_emulator: EmulatorHandle, app_config: AppConfig, app_services: Services,
) -> None:
    """Each eventId is first used for a ``lost`` on device A, then reused, concurrently with a redelivery of
    the first body, for: a ``stolen`` on device B, a ``found`` on A (which would lift the loss), a ``sold``
    on B. The reuse is a conflict (journaled, never applied); the redelivery answers the first outcome."""
    emu, run = clean_emulator, "reuse-" + uuid.uuid4().hex[:8]
    second_kinds = [("stolen", "b"), ("found", "a"), ("sold", "b")] * 2
    pairs = []
    for i, (kind, on) in enumerate(second_kinds):
        a = fleet.individual_device(emu, f"{run}-a{i}", hub=i % 2)
        b = fleet.individual_device(emu, f"{run}-b{i}", hub=(i + 1) % 2)
        pairs.append((f"{run}-{i}", a, b, kind, a if on == "a" else b))
    hubs = {d.registration_id: fleet.assigned_hub(emu, d.registration_id)
            for _, a, b, _, _ in pairs for d in (a, b)}

    for event_id, a, _, _, _ in pairs:
        first = deliver(body(event_id, "lost", a.registration_id), app_services)
        assert first.status == "completed", first

    second_services = make_services(app_config)
    calls: list[Callable[[], Outcome]] = []
    for event_id, a, _, kind, target in pairs:
        calls.append(partial(deliver, body(event_id, kind, target.registration_id), second_services))
        calls.append(partial(deliver, body(event_id, "lost", a.registration_id), app_services))
    outcomes = at_once(calls)

    for n, (event_id, a, b, kind, _) in enumerate(pairs):
        reuse, again = outcomes[2 * n], outcomes[2 * n + 1]
        assert reuse.status == "conflict", (kind, reuse)
        assert reuse.error, reuse
        assert reuse.error.startswith("eventId: "), reuse
        assert again.status == "completed", again
        assert refusals(app_services, event_id, "eventId"), f"the reuse of {event_id} is not journaled"
        record = app_services.journal.get(event_id)
        assert record is not None
        assert record.status == "completed"
        assert record.target.lower() == a.registration_id.lower(), "the first event keeps its eventId"
        assert revoked(emu, a, hubs[a.registration_id]) == [], (event_id, kind)
        assert working(emu, b, hubs[b.registration_id]) == [], (event_id, kind)
        assert fleet.enrollment_status(emu, b.registration_id) == "enabled"
        assert fleet.hub_status(emu, b.registration_id, hubs[b.registration_id]) == "enabled"


@pytest.mark.soak
def test_racing_stolen_and_found_on_one_device_never_leave_it_enabled_without_authorised_force(
    clean_emulator: EmulatorHandle, app_config: AppConfig, app_services: Services,
) -> None:
    """After a ``lost``, a ``stolen`` and a plain ``found`` race on each device (every device at once, 80 ms
    per service call, each event on its own app instance). Whatever the order, the device ends revoked and
    the outcomes are those of a sequential order. Afterwards the theft holds against a plain ``found``, a
    ``lost`` + ``found`` (issue 11, item 2) and a ``force`` without authority; only an authorised force lifts
    it."""
    emu, run = clean_emulator, "race-" + uuid.uuid4().hex[:8]
    devices = [fleet.individual_device(emu, f"{run}-{i}", hub=i % 2) for i in range(4)]
    hubs = {d.registration_id: fleet.assigned_hub(emu, d.registration_id) for d in devices}
    for d in devices:
        lost = deliver(body(f"{d.registration_id}-lost", "lost", d.registration_id), app_services)
        assert lost.status == "completed", lost

    instances = [make_services(app_config) for _ in range(2)]
    calls: list[Callable[[], Outcome]] = []
    for d in devices:
        reg = d.registration_id
        calls.append(partial(deliver, body(f"{reg}-stolen", "stolen", reg), instances[0]))
        calls.append(partial(deliver, body(f"{reg}-found", "found", reg), instances[1]))
    emu.admin("PUT", "/latency", json={"latencyMs": LATENCY_MS, "jitterMs": 0})
    try:
        outcomes = at_once(calls)
    finally:
        emu.admin("PUT", "/latency", json={"latencyMs": 0, "jitterMs": 0})

    for n, d in enumerate(devices):
        reg, hub = d.registration_id, hubs[d.registration_id]
        stolen, found = outcomes[2 * n], outcomes[2 * n + 1]
        assert revoked(emu, d, hub) == [], (stolen, found)
        assert stolen.status == "completed", stolen
        assert found.status in ("completed", "refused"), found
        if found.status == "completed":  # found went first: stolen, applied after it, had to revoke again
            assert [s.outcome for s in stolen.steps] == ["done"] * len(stolen.steps), stolen.steps
        statuses = {r.event_id: r.status for r in app_services.journal.history(reg)}
        assert statuses == {f"{reg}-lost": "completed", f"{reg}-stolen": "completed",
                            f"{reg}-found": found.status}

    # the theft holds against everything but an authorised force
    for d in devices:
        reg, hub = d.registration_id, hubs[d.registration_id]
        plain = deliver(body(f"{reg}-found-2", "found", reg), app_services)
        assert plain.status == "refused", plain
        again = deliver(body(f"{reg}-lost-2", "lost", reg), app_services)
        assert again.status == "completed", again
        after_lost = deliver(body(f"{reg}-found-3", "found", reg), app_services)
        assert after_lost.status == "refused", "a lost after a theft must not reopen the way for a found"
        unauthorised = deliver(body(f"{reg}-found-4", "found", reg, force=True), app_services)
        assert unauthorised.status == "forbidden", unauthorised
        assert refusals(app_services, f"{reg}-found-4", "force"), "the unauthorised force is not journaled"
        assert revoked(emu, d, hub) == [], reg

    d = devices[0]
    forced = deliver(body(f"{d.registration_id}-found-5", "found", d.registration_id, force=True),
                     app_services, force_allowed=True)
    assert forced.status == "completed", forced
    assert working(emu, d, hubs[d.registration_id]) == [], "an authorised force lifts the theft"
    for other in devices[1:]:
        assert revoked(emu, other, hubs[other.registration_id]) == [], other.registration_id
