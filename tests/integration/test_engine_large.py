"""A 1,000-device group across two hubs, purged by the engine against the emulator with S1 throttling on.

Time is compressed (the emulator's throttle windows last 60 s / ``COMPRESSION``; the engine's token bucket
is scaled the same way), so four S1 minutes pass in a few seconds.

* bulk path: every bulk call fits the hub's budget (no 429 from the registry bucket), every device ends
  disabled, and the number of registration records read ahead of finished bulk calls stays bounded. The
  fleet is split 500/500 so that every bulk call is a full 100: a *partial* batch right after a full one is
  spaced by its own size only and can land in the same fixed emulator window (100 + n > 100). IoT Hub
  documents a per-minute rate, not fixed windows; the engine retries such a 429 after its Retry-After.
  See docs/engine-integration.md;
* import-job path (hubs above ``import_job_threshold``): one import job per hub through Azurite blob
  storage, no registry budget spent at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devhost.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, AzuriteHandle
from shared.adapters.blob_container import BlobContainer
from shared.adapters.dps import DpsProvisioningService
from shared.adapters.hub_jobs import HubImportJobs
from shared.adapters.journal_tables import TableJournal
from shared.model import RegistrationState
from tests.integration import engine_fleet as fleet
from unprovision.group.inprocess import GroupWork, Progress
from unprovision.throttle import S1_OPS_PER_MINUTE, HubBudget, InMemoryRateLimiter

pytestmark = pytest.mark.slow

DEVICES = 1000
COMPRESSION = 60.0  # 1 s windows
GROUP = "grp-large"


class CountingDps:
    """The real adapter, with the group stream counted: records handed out vs. devices finished."""

    def __init__(self, inner: DpsProvisioningService) -> None:
        self._inner = inner
        self.read = 0
        self.finished: dict[str, int] = {}
        self.max_ahead = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def iter_group_registrations(self, group_id: str, page_size: int = 100) -> Iterator[RegistrationState]:
        for record in self._inner.iter_group_registrations(group_id, page_size):
            self.read += 1
            self.max_ahead = max(self.max_ahead, self.read - sum(self.finished.values()))
            yield record

    def progress(self, p: Progress) -> None:
        self.finished[p.hub] = p.done


def s1_compressed(emu: Any) -> None:
    emu.admin("PUT", "/throttle", json={"tier": "S1", "units": 1, "dpsThrottle": False,
                                        "timeCompression": COMPRESSION})


def registry_429s(emu: Any) -> int:
    calls = fleet.counters(emu)
    hubs = [calls.get(hub["name"], {}) for hub in emu.hubs]
    return sum(by_status.get("429", 0) for operations in hubs for by_status in operations.values())


def registry_units(emu: Any) -> int:
    units = emu.admin("GET", "/counters")["units"]
    return sum(int(units.get(hub["name"], {}).get("registry", 0)) for hub in emu.hubs)


def test_a_thousand_device_group_on_two_hubs_is_purged_within_s1_with_bounded_memory(
        clean_emulator: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    per_hub = fleet.seed_large_group(emu, GROUP, DEVICES, seed=None)  # 500 + 500: full batches only (see doc)
    s1_compressed(emu)
    # A bucket passes at most burst + rate x window ops in any window: 10 + 90 fits the fixed S1 window of 100
    # (a bulk call may overdraw the bucket and waits for the debt, so the burst can be below a call's size).
    rate = S1_OPS_PER_MINUTE * COMPRESSION
    budget = HubBudget(ops_per_minute=rate * 0.9, burst=S1_OPS_PER_MINUTE * 0.1)
    work = GroupWork(limiter=InMemoryRateLimiter(default=budget), max_in_flight=1, page_size=100)
    dps, _registries = fleet.engine_ports(emu)
    counting = CountingDps(dps)
    engine = fleet.engine(emu, table_journal, dps=counting, group_work=work)
    outcome = engine.apply(fleet.event("e-large", "compromised", group_id=GROUP), progress=counting.progress)
    assert outcome.status == "completed", outcome.error
    assert sum(1 for i in range(2) for s in fleet.hub_statuses(emu, i).values() if s == "disabled") == DEVICES
    assert registry_429s(emu) == 0, "a bulk call went over the hub's S1 budget"
    assert registry_units(emu) == DEVICES  # one registry op per device, none repeated
    # per hub: one call in flight + one batch filling, plus the page being read
    bound = len(per_hub) * (work.max_in_flight + 1) * 100 + work.page_size
    assert counting.read == DEVICES
    assert counting.max_ahead <= bound



def job_runners(emu: Any, blobs: AzuriteHandle, prefix: str) -> Any:
    """``GroupWork.import_jobs``: one working container per hub (the service's error log has a fixed name)."""
    connections = {h["hostName"]: h["connectionString"] for h in emu.hubs}

    def for_hub(hub: str) -> HubImportJobs:
        name = f"{prefix}-{list(connections).index(hub)}"
        assert blobs.blob_url is not None
        fleet.create_container(blobs.blob_url, DEV_ACCOUNT, DEV_ACCOUNT_KEY, name)
        container = BlobContainer.for_account(blobs.blob_url, DEV_ACCOUNT, DEV_ACCOUNT_KEY, name)
        return HubImportJobs.from_connection_string(connections[hub], container, poll_interval=0.05,
                                                    retrier=fleet.fast_retrier())
    return for_hub


@pytest.mark.parametrize("case", [
    ("compromised", {}, "disabled"),
    ("retired", {"deleteGroup": True}, None),
])
def test_hubs_above_the_threshold_are_purged_by_one_import_job_without_spending_registry_budget(
        clean_emulator: Any, table_journal: TableJournal, blob_store: AzuriteHandle,
        case: tuple[str, dict[str, Any], str | None]) -> None:
    emu = clean_emulator
    event_type, extra, final = case
    fleet.seed_large_group(emu, GROUP, DEVICES)
    s1_compressed(emu)
    work = GroupWork(import_job_threshold=300, import_jobs=job_runners(emu, blob_store, f"jobs{event_type}"))
    outcome = fleet.engine(emu, table_journal, group_work=work).apply(
        fleet.event(f"e-job-{event_type}", event_type, group_id=GROUP, **extra))
    assert outcome.status == "completed", outcome.error
    assert outcome.steps[-1].after is not None
    assert f"changed={DEVICES} unchanged=0 failed=0" in outcome.steps[-1].after
    statuses = [fleet.hub_statuses(emu, i) for i in range(2)]
    if final is None:
        assert sum(len(s) for s in statuses) == 0
    else:
        assert [v for s in statuses for v in s.values()] == [final] * DEVICES
        state = emu.admin("GET", "/state")["hubs"][0]["devices"][0]
        assert state["auth"]["type"] == "certificateAuthority"  # the rewrite kept the authentication
    assert registry_units(emu) == 0
    assert registry_429s(emu) == 0


def test_a_disable_job_counts_already_disabled_and_absent_members_as_unchanged(
        clean_emulator: Any, table_journal: TableJournal, blob_store: AzuriteHandle) -> None:
    """The disable job's wanted set lives in a temporary SQLite db (bounded memory); its counts must match
    the in-memory set it replaced: present + enabled → changed, disabled or absent → unchanged."""
    emu = clean_emulator
    fleet.seed_large_group(emu, GROUP, 200, seed=None)  # 100 + 100 enabled identities
    hosts = fleet.hub_hosts(emu)
    extra = [{"registrationId": f"{GROUP}-x{n:02d}", "assignedHub": hosts[n % 2],
              "deviceId": f"{GROUP}-x{n:02d}", "status": "assigned", "enrollmentGroupId": GROUP}
             for n in range(20)]
    disabled = [{"deviceId": r["deviceId"], "status": "disabled",
                 "authentication": {"type": "certificateAuthority"}}
                for r in extra[:10] if r["assignedHub"] == hosts[0]]
    emu.admin("POST", "/seed", json={"registrations": extra, "devices": {emu.hubs[0]["name"]: disabled}})
    # uncompressed (F = 1) the default 10 s start latency would add 20 s (export, then import): instant jobs
    emu.admin("PUT", "/jobs", json={"jobStartSeconds": 0, "jobDevicesPerSecond": 1e6})
    work = GroupWork(import_job_threshold=1, import_jobs=job_runners(emu, blob_store, "jobsunchanged"))
    outcome = fleet.engine(emu, table_journal, group_work=work).apply(
        fleet.event("e-job-unchanged", "compromised", group_id=GROUP))
    assert outcome.status == "completed", outcome.error
    # 5 seeded disabled on hub 0; the other 15 extra members have no identity at all
    assert "changed=200 unchanged=20 failed=0" in (outcome.steps[-1].after or "")
    statuses = [fleet.hub_statuses(emu, i) for i in range(2)]
    assert [v for s in statuses for v in s.values()] == ["disabled"] * 205
