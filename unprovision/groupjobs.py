"""Group scope, import-job path: hubs holding many of a group's devices are purged by one import job each.

An import job (``shared.adapters.hub_jobs.HubImportJobs``) is not limited by the identity-registry
throttle, so one job replaces thousands of throttled bulk calls. ``purge_group`` (in-process mode) asks
``job_runners`` which hubs take this path, skips them in its bulk lanes, and then runs ``job_purge`` for
each. Scale-out mode does not use the path. See docs/engine-integration.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from shared.model import RegistrationState
from shared.ports import ProvisioningService


class JobCounts(Protocol):
    """Device counts of one finished job (``shared.adapters.hub_jobs.JobResult`` has this shape)."""

    @property
    def changed(self) -> int: ...

    @property
    def unchanged(self) -> int: ...

    @property
    def failed(self) -> int: ...


class ImportJobRunner(Protocol):
    """One hub's import-job path (``shared.adapters.hub_jobs.HubImportJobs``): device IDs are streamed."""

    def delete(self, device_ids: Iterable[str]) -> JobCounts: ...

    def disable(self, device_ids: Iterable[str], reason: str | None = None) -> JobCounts: ...


# hub host name -> its runner, or None when that hub cannot use the path (it then stays on the bulk path)
ImportJobs = Callable[[str], ImportJobRunner | None]


def identity_of(record: RegistrationState) -> tuple[str | None, str | None]:
    """(hub, device ID) of a registration record; either is None when the record has no identity to purge."""
    return record.assigned_hub, record.device_id or (record.registration_id if record.assigned_hub else None)


def job_runners(dps: ProvisioningService, group_id: str, *, threshold: int | None,
                import_jobs: ImportJobs | None, page_size: int) -> dict[str, ImportJobRunner]:
    """Hubs holding at least ``threshold`` of the group's devices, with their runners (one counting pass,
    no IDs kept). Empty when the path is not configured; a hub whose runner is None is left out."""
    if threshold is None or import_jobs is None:
        return {}
    counts: dict[str, int] = {}
    for record in dps.iter_group_registrations(group_id, page_size):
        hub, device_id = identity_of(record)
        if hub is not None and device_id is not None:
            counts[hub] = counts.get(hub, 0) + 1
    runners: dict[str, ImportJobRunner] = {}
    for hub, count in counts.items():
        runner = import_jobs(hub) if count >= threshold else None
        if runner is not None:
            runners[hub] = runner
    return runners


def _hub_device_ids(dps: ProvisioningService, group_id: str, hub: str, page_size: int) -> Iterator[str]:
    for record in dps.iter_group_registrations(group_id, page_size):
        record_hub, device_id = identity_of(record)
        if record_hub == hub and device_id is not None:
            yield device_id


def job_purge(dps: ProvisioningService, group_id: str, hub: str, runner: ImportJobRunner, action: str, *,
              page_size: int, reason: str | None) -> JobCounts:
    """One import job for ``hub``; the device IDs stream from DPS straight into the job's blob."""
    ids = _hub_device_ids(dps, group_id, hub, page_size)
    return runner.delete(ids) if action == "delete" else runner.disable(ids, reason)
