"""One side of the group-purge benchmark, run in its own process so its peak RSS is its own:

    python -m bench.purge_child CONFIG.json  (settings as JSON on stdin, result as JSON on stdout)

* ``engine``: ``unprovision.group.inprocess.purge_group`` over the real adapters, with the ``GroupWork``
  the product gives its engine (``unprovision.wiring.build_services``): DPS registration query pages,
  throttled bulk calls per hub (limiter sized to the emulator's compressed S1 budget), and — when
  ``storage`` names a blob-capable account — the import-job factory of ``unprovision.wiring.import_jobs``
  with the ``GROUP_IMPORT_JOB_THRESHOLD`` setting (default 1000 devices per hub). ``importJobs: false``
  leaves the factory out, which measures the bulk path on its own.
* ``naive``: what a script around the Azure CLI does — enumerate the group's registrations, then per device
  ``IoTHubRegistryManager.get_device`` followed by ``delete_device`` or an update to ``disabled``, sleeping
  for a 429's ``Retry-After`` and trying again. ``sample`` limits it to the first devices (extrapolated by
  the caller).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psutil

from bench import wirecount

T = TypeVar("T")
NAIVE_MAX_TRIES = 50


def _peak_rss_mb() -> float:
    """Peak RSS of THIS program: ``VmHWM`` (reset by exec). ``ru_maxrss`` is not used first because Linux
    carries the parent's peak across fork + exec, so a child of a big parent would report the parent's."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_engine(cfg: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    from shared.adapters.dps import DpsProvisioningService
    from shared.adapters.iothub import HubRegistries
    from shared.plan import StepKind
    from unprovision.group.inprocess import GroupWork, purge_group
    from unprovision.throttle import HubBudget, InMemoryRateLimiter

    ca = cfg["caBundle"]
    dps = DpsProvisioningService.from_connection_string(cfg["dps"]["connectionString"], ca_bundle=ca)
    registries = HubRegistries({h["hostName"]: h["connectionString"] for h in cfg["hubs"]}, ca_bundle=ca)
    per_min, burst = settings["limiterOpsPerMinute"], settings["limiterBurst"]
    limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=per_min, burst=burst))
    threshold, import_jobs = _job_path(cfg, settings)
    work = GroupWork(
        limiter=limiter,
        max_in_flight=settings.get("maxInFlight", 2),
        page_size=settings.get("pageSize", 100),
        import_job_threshold=threshold,
        import_jobs=import_jobs,
    )
    kind = (
        StepKind.GROUP_DEVICES_DELETED if settings["action"] == "delete" else StepKind.GROUP_DEVICES_DISABLED
    )
    start = time.perf_counter()
    result = purge_group(
        "bench-event", settings["groupId"], kind, dps=dps, registries=registries, work=work, reason="bench"
    )
    wall = time.perf_counter() - start
    total = result.total
    return {
        "wallSeconds": wall,
        "devices": total.done,
        "changed": total.changed,
        "unchanged": total.unchanged,
        "failed": total.failed,
        "bulkCalls": result.calls,
        "importJobs": result.jobs,
        "importJobThreshold": threshold if import_jobs is not None else None,
    }


def _job_path(cfg: dict[str, Any], settings: dict[str, Any]) -> tuple[int | None, Any]:
    """(threshold, factory) exactly as the app wires them: ``Settings`` from the emulator's config and the
    storage connection string (``GROUP_IMPORT_JOB_THRESHOLD`` from ``importJobThreshold`` when given, else
    the product default), the factory from ``wiring.import_jobs``. (None, None) when the side runs without
    the path or the storage has no blob endpoint."""
    storage = settings.get("storage")
    if not settings.get("importJobs") or not storage:
        return None, None
    from shared.adapters.settings import GROUP_IMPORT_JOB_THRESHOLD, from_emulator
    from unprovision import wiring

    base = {}
    if settings.get("importJobThreshold") is not None:
        base[GROUP_IMPORT_JOB_THRESHOLD] = str(int(settings["importJobThreshold"]))
    app = from_emulator(Path(cfg["configPath"]), storage, base=base)
    factory = wiring.import_jobs(app, storage, prefix=settings.get("tablePrefix", "bench"))
    return (app.group_import_job_threshold, factory) if factory is not None else (None, None)


def _honour_429(fn: Callable[[], T], stats: dict[str, float]) -> T:
    """Call; on 429 sleep for Retry-After (default 1 s) and try again, like a shell loop around ``az``."""
    from msrest.exceptions import HttpOperationError

    for _ in range(NAIVE_MAX_TRIES):
        try:
            return fn()
        except HttpOperationError as exc:
            response = getattr(exc, "response", None)
            if response is None or response.status_code != 429:
                raise
            delay = float(response.headers.get("Retry-After") or 1)
            stats["throttled"] += 1
            stats["sleptSeconds"] += delay
            time.sleep(delay)
    raise RuntimeError("naive baseline: still throttled after many tries")


def _naive_one(rm: Any, device_id: str, action: str, stats: dict[str, float]) -> None:
    """Get, then delete or disable with the etag just read: two identity-registry operations."""
    device = _honour_429(partial(rm.get_device, device_id), stats)
    if action == "delete":
        _honour_429(partial(rm.delete_device, device_id, etag=device.etag), stats)
    else:
        _honour_429(partial(rm.update_device_with_certificate_authority, device_id, etag=device.etag,
                            status="disabled"), stats)


def run_naive(cfg: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    from azure.iot.hub import IoTHubRegistryManager

    from shared.adapters.dps import DpsProvisioningService

    ca = cfg["caBundle"]
    dps = DpsProvisioningService.from_connection_string(cfg["dps"]["connectionString"], ca_bundle=ca)
    managers: dict[str, Any] = {}
    for hub in cfg["hubs"]:
        manager = IoTHubRegistryManager.from_connection_string(hub["connectionString"])
        manager.protocol.config.connection.verify = ca
        managers[hub["hostName"].lower()] = manager
    stats = {"throttled": 0.0, "sleptSeconds": 0.0}
    sample, done = int(settings["sample"]), 0
    start = time.perf_counter()
    for record in dps.iter_group_registrations(settings["groupId"], settings.get("pageSize", 100)):
        if done >= sample:
            break
        if not record.assigned_hub or not record.device_id:
            continue
        _naive_one(managers[record.assigned_hub.lower()], record.device_id, settings["action"], stats)
        done += 1
    wall = time.perf_counter() - start
    return {
        "wallSeconds": wall,
        "devices": done,
        "changed": done,
        "unchanged": 0,
        "failed": 0,
        "client429": int(stats["throttled"]),
        "clientSleptSeconds": stats["sleptSeconds"],
    }


def main(argv: list[str]) -> int:
    cfg = json.loads(open(argv[1], encoding="utf-8").read())  # noqa: SIM115 - tiny file, read once
    cfg["configPath"] = argv[1]
    settings = json.loads(sys.stdin.read())
    wirecount.install()
    baseline = psutil.Process().memory_info().rss / 2**20
    run = run_engine if settings["side"] == "engine" else run_naive
    result = run(cfg, settings)
    result.update(
        {
            "side": settings["side"],
            "baselineRssMb": baseline,
            "peakRssMb": _peak_rss_mb(),
            "requests": wirecount.snapshot(),
        }
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
