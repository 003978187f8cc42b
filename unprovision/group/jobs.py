"""Group scope, import-job path: hubs holding many of a group's devices are purged by one import job each.

An import job (``shared.adapters.hub_jobs.HubImportJobs``) is not limited by the identity-registry
throttle, so one job replaces thousands of throttled bulk calls. When the path is configured,
``purge_group`` (in-process mode) reads the group from DPS exactly once: ``spool_group`` writes every
device ID to an unnamed temporary file per hub (bounded memory, one DPS pass) and counts them;
``job_runners`` picks the hubs at or above the threshold; each of them gets one job (``job_purge``) fed
from its spool file, the hubs' jobs running concurrently (IoT Hub allows one active import/export job per
hub), while the other hubs take the bulk path from their spool files. Scale-out mode does not use the
path. See docs/engine-integration.md.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, Protocol

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
    """One hub's import-job path (``shared.adapters.hub_jobs.HubImportJobs``): device IDs are streamed.
    Runners of different hubs are called from different threads at once; one runner is never called
    twice at the same time."""

    def delete(self, device_ids: Iterable[str]) -> JobCounts: ...

    def disable(self, device_ids: Iterable[str], reason: str | None = None, *,
                reasons: Mapping[str, str] | None = None) -> JobCounts:
        """``reasons``: a statusReason per device ID, else ``reason``."""
        ...


# hub host name -> its runner, or None when that hub cannot use the path (it then stays on the bulk path)
ImportJobs = Callable[[str], ImportJobRunner | None]


def identity_of(record: RegistrationState) -> tuple[str | None, str | None]:
    """(hub, device ID) of a registration record; either is None when the record has no identity to purge."""
    return record.assigned_hub, record.device_id or (record.registration_id if record.assigned_hub else None)


class GroupSpool:
    """A group's device IDs per hub, spooled to unnamed temporary files (deleted on ``close``).

    Why a spool: the counting pass that decides which hubs take jobs and the passes that feed the jobs and
    the bulk lanes were separate DPS reads (2 + one per job hub); DPS allows 1,000 ops/min, so each pass
    costs real time. The spool makes it one pass with memory bounded by the file buffers (one per hub), at
    the cost of about 40 bytes of local disk per device. Each line is a JSON string, so any ID round-trips.
    A hub's IDs must be read by one consumer at a time (``ids`` rewinds the hub's file)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._files: dict[str, IO[str]] = {}

    def add(self, hub: str, device_id: str) -> None:
        spool = self._files.get(hub)
        if spool is None:
            # closed by ``close`` (the spool outlives this call): unlinked at once, gone when closed
            spool = self._files[hub] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        spool.write(json.dumps(device_id) + "\n")
        self.counts[hub] = self.counts.get(hub, 0) + 1

    def ids(self, hub: str) -> Iterator[str]:
        """The hub's device IDs in stream order, read lazily from its file."""
        spool = self._files.get(hub)
        if spool is None:
            return
        spool.flush()
        spool.seek(0)
        for line in spool:
            yield json.loads(line)

    def close(self) -> None:
        for spool in self._files.values():
            spool.close()
        self._files.clear()

    def __enter__(self) -> GroupSpool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def spool_group(dps: ProvisioningService, group_id: str, page_size: int) -> GroupSpool:
    """ONE pass over the group's registration records into a ``GroupSpool``; records without a hub or
    device ID (never assigned) have no identity to purge and are skipped, as in ``iter_batches``."""
    spool = GroupSpool()
    try:
        for record in dps.iter_group_registrations(group_id, page_size):
            hub, device_id = identity_of(record)
            if hub is not None and device_id is not None:
                spool.add(hub, device_id)
    except BaseException:
        spool.close()
        raise
    return spool


def job_runners(counts: Mapping[str, int], *, threshold: int | None,
                import_jobs: ImportJobs | None) -> dict[str, ImportJobRunner]:
    """Hubs holding at least ``threshold`` of the group's devices (``counts``: devices per hub, e.g.
    ``GroupSpool.counts``), with their runners. Empty when the path is not configured; a hub whose runner
    is None is left out (it stays on the bulk path)."""
    if threshold is None or import_jobs is None:
        return {}
    runners: dict[str, ImportJobRunner] = {}
    for hub, count in counts.items():
        runner = import_jobs(hub) if count >= threshold else None
        if runner is not None:
            runners[hub] = runner
    return runners


def job_purge(runner: ImportJobRunner, action: str, device_ids: Iterable[str], *,
              reason: str | None) -> JobCounts:
    """One import job for one hub; ``device_ids`` are streamed into the job's blob."""
    return runner.delete(device_ids) if action == "delete" else runner.disable(device_ids, reason)
