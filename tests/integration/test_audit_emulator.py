"""The audit against the DPS + IoT Hub emulator, through the real adapters (real SDKs) and the real engine.

Revocations are applied by the engine (``unprovision.engine.core.Engine``); drift is then made through the
SDK-backed adapters (as the portal would), and the audit must report exactly that drift. Stores are in
memory here (their Table versions are covered on Azurite in test_audit_stores.py).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.adapters.audit_memory import (
    InMemoryAuditReportStore,
    InMemoryPoisonQueue,
    InMemorySuppressionStore,
)
from shared.adapters.journal_memory import InMemoryJournal
from shared.audit_report import AuditReport
from shared.events import parse_event
from shared.model import ProvisioningStatus
from shared.policy import DEFAULT_POLICY
from shared.retry import Retrier, RetryPolicy
from unprovision.audit.run import AuditPorts, run_audit
from unprovision.audit.settings import AuditSettings
from unprovision.engine.core import Engine
from unprovision.group.inprocess import GroupWork
from unprovision.throttle import InMemoryRateLimiter

pytest.importorskip("emulator.testing", reason="the emulator's test fixtures are not there yet")

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _retrier() -> Retrier:
    return Retrier(RetryPolicy(timeout=30), sleep=lambda _s: None, rng=random.Random(1))


class EmulatedFleet:
    """Group ``grp`` (symmetric key) with d1-d3, own enrollment ``own1``, all registered in hub 0."""

    def __init__(self, emu: Any) -> None:
        from shared.adapters.dps import DpsProvisioningService
        from shared.adapters.iothub import HubRegistries

        self.emu = emu
        self.host = emu.hubs[0]["hostName"]
        self.dps = DpsProvisioningService.from_connection_string(
            emu.dps_connection_string, retrier=_retrier()
        )
        self.registries = HubRegistries(
            {h["hostName"]: h["connectionString"] for h in emu.hubs}, retrier=_retrier()
        )
        self.journal = InMemoryJournal()
        self.reports = InMemoryAuditReportStore()
        self.suppressions = InMemorySuppressionStore()
        self.hub = self.registries.for_hub(self.host)
        self.rm = emu.registry_manager()
        self._seed()

    def _seed(self) -> None:
        from provisioningserviceclient import ProvisioningServiceClient
        from provisioningserviceclient.models import (
            AttestationMechanism,
            EnrollmentGroup,
            IndividualEnrollment,
        )

        sdk = ProvisioningServiceClient.create_from_connection_string(self.emu.dps_connection_string)
        sym = AttestationMechanism(type="symmetricKey")
        sdk.create_or_update(EnrollmentGroup.create("grp", sym, provisioning_status="enabled"))
        sdk.create_or_update(IndividualEnrollment.create("own1", sym, provisioning_status="enabled"))
        self.add_registrations(["d1", "d2", "d3"], "grp")
        self.add_registrations(["own1"], None)
        for device_id in ("d1", "d2", "d3", "own1"):
            self.rm.create_device_with_sas(device_id, None, None, "enabled")

    def add_registrations(self, ids: list[str], group: str | None) -> None:
        items = [
            {
                "registrationId": r,
                "assignedHub": self.host,
                "deviceId": r,
                "status": "assigned",
                **({"enrollmentGroupId": group} if group else {}),
            }
            for r in ids
        ]
        self.emu.admin("POST", "/seed", json={"registrations": items})

    def apply(self, event: Any) -> Any:
        engine = Engine(dps=self.dps, registries=self.registries, journal=self.journal, policy=DEFAULT_POLICY,
                        group_work=GroupWork())
        return engine.apply(event)

    def revoke(self, target: str) -> None:
        event_id = f"ev-{target}"
        self.apply(
            parse_event(
                {
                    "eventId": event_id,
                    "type": "lost",
                    "registrationId": target,
                    "occurredAt": "2026-05-01T00:00:00Z",
                    "source": "tracker",
                }
            )
        )
        assert self.journal.get(event_id).status == "completed"

    def audit(self, *, remediate: bool = False) -> AuditReport:
        ports = AuditPorts(
            dps=self.dps, registries=self.registries, journal=self.journal, reports=self.reports,
            suppressions=self.suppressions, poison_queues=(InMemoryPoisonQueue(),),
            hub_limiter=InMemoryRateLimiter(), apply=self.apply,
            settings=AuditSettings(filter_capacity=10_000),
        )
        return run_audit(ports, now=NOW, remediate_findings=remediate)


def _found(report: AuditReport) -> set[tuple[str, str]]:
    return {(f.check.value, f.resource) for f in report.findings}


@pytest.fixture
def fleet(clean_emulator: Any) -> EmulatedFleet:
    return EmulatedFleet(clean_emulator)


def test_clean_emulated_fleet_with_revocations_has_no_findings(fleet):
    fleet.revoke("own1")
    fleet.revoke("d1")
    report = fleet.audit()
    assert report.errors == ()
    assert report.findings == ()


def test_drift_made_through_the_sdks_is_found_exactly_and_remediated(fleet):
    for target in ("own1", "d1", "d2"):
        fleet.revoke(target)
    fleet.dps.set_enrollment_status("own1", ProvisioningStatus.ENABLED)  # portal re-enables
    fleet.dps.delete_enrollment("d1")  # someone deletes the blocking enrollment
    fleet.hub.enable("d2")  # and re-enables a hub identity
    fleet.rm.create_device_with_sas("rogue", None, None, "enabled")
    fleet.add_registrations(["d9"], "grp")  # a record without a hub identity
    report = fleet.audit(remediate=True)
    assert report.errors == ()
    assert _found(report) == {
        ("REVOCATION_REVERSED", "own1"),
        ("BLOCKING_ENROLLMENT_MISSING", "d1"),
        ("HUB_IDENTITY_STILL_ACTIVE", f"{fleet.host}/d2"),
        ("HUB_DEVICE_WITHOUT_REGISTRATION", f"{fleet.host}/rogue"),
        ("REGISTRATION_WITHOUT_HUB_DEVICE", "d9"),
    }
    assert sorted(r.status for r in report.remediations) == ["completed"] * 3
    again = fleet.audit()
    assert _found(again) == {
        ("HUB_DEVICE_WITHOUT_REGISTRATION", f"{fleet.host}/rogue"),  # not remediable: reported only
        ("REGISTRATION_WITHOUT_HUB_DEVICE", "d9"),
    }
    assert fleet.dps.get_enrollment("own1").status is ProvisioningStatus.DISABLED
    assert fleet.dps.get_enrollment("d1").is_blocking


def test_deleted_group_leaves_orphaned_records_and_parent_group_coverage(fleet):
    from provisioningserviceclient import ProvisioningServiceClient
    from provisioningserviceclient.models import AttestationMechanism, EnrollmentGroup

    from tests.support.certs import make_ca, make_intermediate

    root = make_ca("Emu Root")
    inter = make_intermediate("Emu Intermediate", root)
    sdk = ProvisioningServiceClient.create_from_connection_string(fleet.emu.dps_connection_string)
    for gid, cert in (("root-group", root), ("inter-group", inter)):
        mech = AttestationMechanism.create_with_x509_signing_certs(cert.pem)
        sdk.create_or_update(EnrollmentGroup.create(gid, mech, provisioning_status="enabled"))
    fleet.add_registrations(["x1"], "inter-group")
    fleet.rm.create_device_with_sas("x1", None, None, "enabled")
    assert fleet.audit().findings == ()  # remembers the groups it saw
    sdk.delete_enrollment_group_by_param("inter-group")
    report = fleet.audit()
    assert report.errors == ()
    assert _found(report) == {
        ("REENROLLMENT_VIA_PARENT_GROUP", "inter-group"),
        ("ORPHANED_REGISTRATIONS", "inter-group"),
    }
