"""Batch primitives of group work: the stream of (hub, ≤100 device IDs) and one throttled bulk call.

A group's registration records are partitioned by ``assigned_hub`` into batches of at most 100 device IDs
(the bulk-call limit of the IoT Hub registry, docs/azure-behaviour.md); each batch is applied by one bulk
call whose device counts make a ``Tally``. Bulk calls count per device against the hub's identity-registry
budget, so each call first reserves its devices from the shared ``RateLimiter``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from shared.errors import Throttled
from shared.plan import StepKind
from shared.ports import BulkResult, DeviceRegistry, ProvisioningService, RateLimiter, Tally
from shared.retry import Retrier, RetryPolicy
from unprovision.group.jobs import identity_of
from unprovision.throttle import Sleep, wait_for

BATCH_LIMIT = 100
ACTIONS = {StepKind.GROUP_DEVICES_DISABLED: "disable", StepKind.GROUP_DEVICES_DELETED: "delete"}
KIND_BY_ACTION = {action: kind for kind, action in ACTIONS.items()}
THROTTLE_RETRIES = 3
# Retried only on a 429 (the budget's waits are inside each attempt, so the total time is not what bounds it:
# the attempts are; the host's functionTimeout of 10 minutes is the outer bound, host.json).
THROTTLE_POLICY = RetryPolicy(
    attempts=THROTTLE_RETRIES + 1, timeout=600.0, wait_initial=1.0, wait_max=10.0, retry_on=(Throttled,)
)


def tally_of(result: BulkResult) -> Tally:
    """A device the hub does not know counts as unchanged: an absent identity cannot connect, so the goal
    (no working identity) holds. Not pinned by a documented source; it is this app's reading."""
    absent = sum(1 for code in result.failed.values() if "DeviceNotFound" in code)
    return Tally(len(result.changed), len(result.unchanged) + absent, len(result.failed) - absent)


def bulk_call(registry: DeviceRegistry, action: str, device_ids: list[str], *, limiter: RateLimiter,
              sleep: Sleep, reason: str | None = None) -> Tally:
    """One throttled bulk call (``bulk_result``), counted."""
    return tally_of(bulk_result(registry, action, device_ids, limiter=limiter, sleep=sleep, reason=reason))


def bulk_result(registry: DeviceRegistry, action: str, device_ids: list[str], *, limiter: RateLimiter,
                sleep: Sleep, reason: str | Mapping[str, str] | None = None) -> BulkResult:
    """One throttled bulk call, with what happened to each device. A 429 despite the budget (another
    client spends it too) is retried by the project's one retry mechanism (``shared/retry.py``): only
    ``Throttled``, at most ``THROTTLE_RETRIES`` more times, after at least its Retry-After; each attempt
    first reserves its devices again. Then the 429 surfaces so the host redelivers (429s:
    docs/azure-behaviour.md §8.1; redelivery: §F2)."""
    if not 0 < len(device_ids) <= BATCH_LIMIT:
        raise ValueError(f"a bulk call takes 1..{BATCH_LIMIT} devices, got {len(device_ids)}")

    def attempt() -> BulkResult:
        wait_for(limiter, registry.hub, len(device_ids), sleep)
        if action == "delete":
            return registry.bulk_delete(device_ids)
        return registry.bulk_disable(
            device_ids, reason, spend=lambda reads: wait_for(limiter, registry.hub, reads, sleep))

    return Retrier(THROTTLE_POLICY, sleep=sleep).call(attempt, name=f"bulk {action} ({registry.hub})")


def iter_batches(
    dps: ProvisioningService, group_id: str, page_size: int = 100
) -> Iterator[tuple[str, list[str]]]:
    """(hub, ≤100 device IDs) in stream order; a hub's batch is yielded as soon as it is full, the rest at
    the end. Records without a hub or device ID (never assigned) have no identity to purge and are skipped."""
    buffers: dict[str, list[str]] = {}
    for record in dps.iter_group_registrations(group_id, page_size):
        hub, device_id = identity_of(record)
        if hub is None or device_id is None:
            continue
        buffer = buffers.setdefault(hub, [])
        buffer.append(device_id)
        if len(buffer) == BATCH_LIMIT:
            yield hub, buffers.pop(hub)
    for hub, buffer in buffers.items():
        yield hub, buffer
