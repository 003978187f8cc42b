"""One audit run's reads and state: metered calls, capped findings, groups, errors and notes.

Every hub read is paid from the app's shared per-hub registry budget (``hub_limiter``, the ``RateLimiter``
the engine spends): 1 token per point read, ``hub_page_ops`` per listed page, reserved (and waited for)
before the call. DPS reads spend the audit's own ``"dps"`` bucket (``dps_ops_per_minute``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from shared.audit import CheckId, FindingCollector, GroupSnapshot
from shared.audit_report import AuditReport
from shared.bloom import BloomFilter
from shared.errors import UnprovisionError
from shared.model import EnrollmentGroup, HubDevice, RegistrationState
from shared.ports import AuditReportStore, DeviceRegistries, Journal, ProvisioningService, RateLimiter
from unprovision.audit.settings import AuditSettings
from unprovision.throttle import HubBudget, InMemoryRateLimiter, Sleep, wait_for

log = logging.getLogger(__name__)
T = TypeVar("T")
DPS_KEY = "dps"


class AuditReader:
    """Holds only bounded state: groups (≤200 in DPS), one filter, capped findings."""

    def __init__(
        self, cfg: AuditSettings, *, dps: ProvisioningService, registries: DeviceRegistries, journal: Journal,
        hub_limiter: RateLimiter, sleep: Sleep,
    ) -> None:
        self.cfg, self.sleep = cfg, sleep
        self.dps, self.registries, self.journal = dps, registries, journal
        self.hub_limiter = hub_limiter
        rate = cfg.dps_ops_per_minute
        self.dps_limiter = InMemoryRateLimiter({DPS_KEY: HubBudget(rate, rate)})
        self.found = FindingCollector(limit=cfg.max_findings_per_check)
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.groups: list[EnrollmentGroup] = []
        self.known_groups: dict[str, GroupSnapshot] = {}  # earlier runs + journal: finds deleted groups
        self.revoked = BloomFilter(cfg.filter_capacity, cfg.filter_error_rate)  # revoked registration IDs

    def spend_dps(self, ops: int = 1) -> None:
        wait_for(self.dps_limiter, DPS_KEY, ops, self.sleep)

    def spend_hub(self, hub: str, ops: int = 1) -> None:
        wait_for(self.hub_limiter, hub, ops, self.sleep)

    def paged(self, items: Iterable[T], pay: Callable[[], None]) -> Iterator[T]:
        """Pay for each page of ``page_size`` items before it is pulled."""
        pay()
        for n, item in enumerate(items):
            if n and n % self.cfg.page_size == 0:
                pay()
            yield item

    def hub_devices(self, hub: str) -> Iterator[HubDevice]:
        registry = self.registries.for_hub(hub)
        pages = registry.iter_devices(self.cfg.page_size)
        return self.paged(pages, lambda: self.spend_hub(hub, self.cfg.hub_page_ops))

    def hub_device(self, hub: str, device_id: str) -> HubDevice | None:
        registry = self.registries.for_hub(hub)
        self.spend_hub(registry.hub)
        return registry.get(device_id)

    def group_records(self, group_id: str) -> Iterator[RegistrationState]:
        return self.paged(self.dps.iter_group_registrations(group_id, self.cfg.page_size), self.spend_dps)

    def guard(self, what: str, fn: Callable[[], None]) -> None:
        """Run one check; an error there is reported and the other checks go on."""
        try:
            fn()
        except UnprovisionError as exc:
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            log.warning("audit check %s failed: %s", what, type(exc).__name__)

    def room(self, check: CheckId) -> bool:
        return self.found.counts.get(check.value, 0) < self.cfg.max_findings_per_check

    def load_groups(self, reports: AuditReportStore) -> None:
        self.groups = list(self.paged(self.dps.iter_groups(), self.spend_dps))
        previous = next(iter(reports.iter_reports(limit=1)), None)
        if previous:
            self.known_groups = {g.group_id.lower(): g for g in AuditReport.from_json(previous).groups}

    def snapshots(self) -> tuple[GroupSnapshot, ...]:
        """Present groups, plus deleted ones carried forward so their checks persist until fixed."""
        now = {g.group_id.lower(): GroupSnapshot.of(g) for g in self.groups}
        return (*now.values(), *(s for k, s in self.known_groups.items() if k not in now))
