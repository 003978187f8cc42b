"""A seeded fleet and a mix of lifecycle events whose end state is known in advance.

Every device is a symmetric-key individual enrollment, registered (DPS registration record) to ``hub-1`` or
``hub-2``, with its identity in that hub. Each device receives **at most one** event, so the expected end
state does not depend on the order in which a queue delivers messages:

| kind       | event                                 | outcome   | enrollment | hub identity |
|------------|---------------------------------------|-----------|------------|--------------|
| temporary  | lost / stolen / compromised           | completed | disabled   | disabled     |
| permanent  | sold / moved / retired                | completed | absent     | absent       |
| found      | found on an untouched device          | refused   | enabled    | enabled      |
| unknown    | lost on a registration ID nobody has  | refused   | -          | -            |
| invalid    | near-valid body with a bad field      | rejected  | -          | -            |
| injection  | registration ID with quotes, ``;`` …  | rejected  | -          | -            |
| garbage    | queue body that is not base64         | poisoned  | -          | -            |

The table follows the default policy (``shared.policy.DEFAULT_POLICY``) and the planner's refusals
(``found`` without history, unknown device). Nothing here reads the app's code to compute expectations.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TEMPORARY = ("lost", "stolen", "compromised")
PERMANENT = ("sold", "moved", "retired")
INJECTION_IDS = ("dev'1", "dev 1", "dev;1", "dev'--1", "dev/1", "dev%271", "dev\u02bc1", "dev\u04301",
                 "' OR 1=1 --", "dev\"1", "dev\\1", "dev#1")
MIX = (("temporary", 40), ("permanent", 28), ("found", 8), ("unknown", 7), ("invalid", 9),
       ("injection", 5), ("garbage", 3))


@dataclass(frozen=True)
class Device:
    registration_id: str
    hub: str  # emulator hub name, hub-1 / hub-2


@dataclass(frozen=True)
class Expected:
    """One message we send and what must become of it."""

    event_id: str
    kind: str
    body: str  # JSON text (or garbage for ``garbage``)
    status: str  # completed | refused | rejected | poisoned
    device: Device | None = None
    enrollment: str | None = None  # enabled | disabled | absent
    hub_identity: str | None = None


def seed_fleet(emu: Any, count: int, prefix: str) -> list[Device]:
    """Seed ``count`` devices through the admin API (no HTTP per device)."""
    devices = [Device(f"{prefix}-{i:05d}", "hub-1" if i % 2 == 0 else "hub-2") for i in range(count)]
    for start in range(0, count, 500):
        chunk = devices[start:start + 500]
        emu.admin("POST", "/seed", json={
            "enrollments": [{"registrationId": d.registration_id, "attestation": {"type": "symmetricKey"}}
                            for d in chunk],
            "registrations": [{"registrationId": d.registration_id, "assignedHub": d.hub,
                               "deviceId": d.registration_id} for d in chunk],
            "devices": [{"deviceId": d.registration_id, "hub": d.hub, "authentication": {"type": "sas"}}
                        for d in chunk],
        })
    return devices


def event_body(event_id: str, event_type: str, registration_id: str, **extra: Any) -> str:
    body = {"eventId": event_id, "type": event_type, "registrationId": registration_id,
            "occurredAt": "2026-01-05T10:00:00Z", "source": "soak-suite", **extra}
    return json.dumps(body)


def _invalid(rng: random.Random, event_id: str, device: Device) -> str:
    """Near-valid: one field wrong in a way the contract names."""
    choice = rng.randrange(5)
    if choice == 0:
        return event_body(event_id, "misplaced", device.registration_id)
    if choice == 1:
        return event_body(event_id, "lost", device.registration_id, occurredAt="yesterday")
    if choice == 2:
        return event_body(event_id, "lost", device.registration_id, registrationID="typo")
    if choice == 3:
        return event_body(event_id, "lost", device.registration_id, force=True)
    return json.dumps({"eventId": event_id, "type": "lost", "occurredAt": "2026-01-05T10:00:00Z",
                       "source": "soak-suite"})


# kind -> (event types to draw from, outcome, enrollment after, hub identity after) for kinds on a device
DEVICE_KINDS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "temporary": (TEMPORARY, "completed", "disabled", "disabled"),
    "permanent": (PERMANENT, "completed", "absent", "absent"),
    "found": (("found",), "refused", "enabled", "enabled"),
}


def _one(kind: str, rng: random.Random, event_id: str, device: Device | None) -> Expected:
    if kind in DEVICE_KINDS:
        assert device is not None
        types, status, enrollment, hub = DEVICE_KINDS[kind]
        body = event_body(event_id, rng.choice(types), device.registration_id)
        return Expected(event_id, kind, body, status, device, enrollment, hub)
    if kind == "unknown":
        return Expected(event_id, kind, event_body(event_id, "lost", f"nobody-{rng.getrandbits(40):x}"),
                        "refused")
    if kind == "injection":
        return Expected(event_id, kind, event_body(event_id, "lost", rng.choice(INJECTION_IDS)), "rejected")
    if kind == "garbage":
        return Expected(event_id, kind, "<<not base64: " + event_id + ">>", "poisoned")
    assert device is not None
    return Expected(event_id, kind, _invalid(rng, event_id, device), "rejected")


def mixed_events(devices: Sequence[Device], count: int, seed: int, run: str) -> list[Expected]:
    """``count`` messages drawn from ``MIX``; devices are used at most once (kinds that need one)."""
    rng = random.Random(seed)
    pool = list(devices)
    rng.shuffle(pool)
    kinds, weights = zip(*MIX, strict=True)
    out: list[Expected] = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        needs_device = kind in {"temporary", "permanent", "found", "invalid"}
        if needs_device and not pool:
            kind = "unknown"
        device = pool.pop() if kind in {"temporary", "permanent", "found"} else None
        if kind == "invalid":
            device = devices[i % len(devices)]  # never changes state: any device will do
        out.append(_one(kind, rng, f"{run}-{i:05d}", device))
    return out
