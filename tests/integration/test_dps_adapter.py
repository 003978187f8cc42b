"""DpsProvisioningService against the emulator, through the real provisioningserviceclient 1.2.0.

Arrangement uses the SDK directly (enrollments, groups) and the emulator's admin API (registration
records, faults, counters). Retry waits are real calls to the injected ``sleep``, which never sleeps:
tests use it to change the emulator between attempts (e.g. lift an injected fault).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from provisioningserviceclient import ProvisioningServiceClient
from provisioningserviceclient.models import AttestationMechanism, IndividualEnrollment, InitialTwin
from provisioningserviceclient.models import EnrollmentGroup as SdkGroup

from shared.adapters.dps import DpsProvisioningService
from shared.adapters.read_cache import ReadCache
from shared.errors import AuthFailed, Conflict, NotFound
from shared.model import BLOCKING_MARKER_TAG, AttestationType, ProvisioningStatus
from shared.plan import StepOutcome
from shared.retry import Retrier, RetryPolicy
from tests.support.certs import make_ca, make_leaf, make_self_signed_leaf
from tests.support.doubles import Sleeps, clear_faults, set_faults

pytest.importorskip("emulator.testing", reason="the emulator's test fixtures are not there yet")

HUB = "hub-a"


# ---- helpers --------------------------------------------------------------------------------------


def adapter(emu: Any, sleeps: Sleeps | None = None, cs: str | None = None) -> DpsProvisioningService:
    retrier = Retrier(RetryPolicy(timeout=30), sleep=sleeps or Sleeps(), rng=random.Random(1))
    return DpsProvisioningService.from_connection_string(cs or emu.dps_connection_string, retrier=retrier)


def sdk(emu: Any) -> ProvisioningServiceClient:
    return ProvisioningServiceClient.create_from_connection_string(emu.dps_connection_string)


def calls(emu: Any, status: str | None = None, method: str | None = None) -> int:
    """Answered DPS calls, optionally only those with ``status`` or whose operation names ``method``."""
    counters = emu.admin("GET", "/counters")["calls"].get("dps", {})
    total = 0
    for operation, by_status in counters.items():
        if method and method.upper() not in operation.upper():
            continue
        total += sum(n for s, n in by_status.items() if status is None or s == status)
    return total


def put_enrollment(emu: Any, reg_id: str, *, pem: str | None = None, status: str = "enabled",
                   tags: dict[str, Any] | None = None) -> None:
    mech = (AttestationMechanism.create_with_x509_client_certs(pem) if pem
            else AttestationMechanism(type="symmetricKey"))
    twin = InitialTwin.create(tags=tags) if tags else None
    sdk(emu).create_or_update(IndividualEnrollment.create(reg_id, mech, initial_twin=twin,
                                                          provisioning_status=status))


def put_group(emu: Any, group_id: str, mech: Any, status: str = "enabled") -> None:
    sdk(emu).create_or_update(SdkGroup.create(group_id, mech, provisioning_status=status))


def seed_registrations(emu: Any, group_id: str, reg_ids: list[str]) -> None:
    items = [{"registrationId": r, "assignedHub": emu.hubs[0]["hostName"], "deviceId": r,
              "status": "assigned", "enrollmentGroupId": group_id} for r in reg_ids]
    emu.admin("POST", "/seed", json={"registrations": items})


# ---- reads ----------------------------------------------------------------------------------------


def test_absent_things_read_as_none(clean_emulator: Any) -> None:
    dps = adapter(clean_emulator)
    assert dps.get_enrollment("nobody") is None
    assert dps.get_group("no-group") is None
    assert dps.get_registration("nobody") is None


def test_x509_enrollment_maps_its_certificate_and_status(clean_emulator: Any) -> None:
    leaf = make_self_signed_leaf("device-x1")
    put_enrollment(clean_emulator, "device-x1", pem=leaf.pem, status="disabled")
    got = adapter(clean_emulator).get_enrollment("device-x1")
    assert got is not None
    assert got.attestation is AttestationType.X509
    assert got.status is ProvisioningStatus.DISABLED
    assert got.etag
    assert got.client_certificate is not None
    assert "device-x1" in got.client_certificate.subject
    assert got.blocking_marker is None


def test_groups_tell_signing_certificates_from_ca_references(clean_emulator: Any) -> None:
    root = make_ca("Fleet Root")
    put_group(clean_emulator, "signed", AttestationMechanism.create_with_x509_signing_certs(root.pem))
    put_group(clean_emulator, "by-ca", AttestationMechanism.create_with_x509_ca_refs("fleet-ca"))
    put_group(clean_emulator, "sym", AttestationMechanism(type="symmetricKey"), status="disabled")
    dps = adapter(clean_emulator)
    signed = dps.get_group("signed")
    assert signed is not None
    assert signed.attestation is AttestationType.X509
    assert [c.subject for c in signed.signing_certificates]
    assert "Fleet Root" in signed.signing_certificates[0].subject
    by_ca = dps.get_group("by-ca")
    assert by_ca is not None
    assert by_ca.attestation is AttestationType.X509_CA_REFERENCES
    groups = {g.group_id: g for g in dps.iter_groups()}
    assert set(groups) == {"signed", "by-ca", "sym"}
    assert groups["sym"].status is ProvisioningStatus.DISABLED
    assert groups["sym"].attestation is AttestationType.SYMMETRIC_KEY


def test_enrollments_are_listed_across_pages(clean_emulator: Any) -> None:
    ids = [f"dev-{i:02d}" for i in range(7)]
    for reg_id in ids:
        put_enrollment(clean_emulator, reg_id)
    before = calls(clean_emulator, method="query")
    listed = [e.registration_id for e in adapter(clean_emulator).iter_enrollments(page_size=3)]
    assert sorted(listed) == ids
    assert calls(clean_emulator, method="query") - before >= 3


def test_group_registrations_stream_page_by_page(clean_emulator: Any) -> None:
    put_group(clean_emulator, "grp", AttestationMechanism(type="symmetricKey"))
    ids = [f"member-{i:02d}" for i in range(25)]
    seed_registrations(clean_emulator, "grp", ids)
    dps = adapter(clean_emulator)
    stream = dps.iter_group_registrations("grp", page_size=10)
    first = next(stream)
    assert first.enrollment_group_id == "grp"
    rest = list(stream)
    got = [first, *rest]
    assert sorted(r.registration_id for r in got) == ids
    assert all(r.assigned_hub == clean_emulator.hubs[0]["hostName"] for r in got)
    one = dps.get_registration("member-03")
    assert one is not None
    assert one.device_id == "member-03"
    assert one.status == "assigned"


# ---- mutations ------------------------------------------------------------------------------------


def test_disable_then_disable_again_is_already_done(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-1")
    dps = adapter(clean_emulator)
    first = dps.set_enrollment_status("dev-1", ProvisioningStatus.DISABLED)
    assert first.outcome is StepOutcome.DONE
    assert (first.before, first.after) == ("enabled", "disabled")
    assert dps.set_enrollment_status("dev-1", ProvisioningStatus.DISABLED).outcome is StepOutcome.ALREADY_DONE
    got = dps.get_enrollment("dev-1")
    assert got is not None
    assert got.status is ProvisioningStatus.DISABLED
    assert dps.set_enrollment_status("dev-1", ProvisioningStatus.ENABLED).outcome is StepOutcome.DONE


def test_group_status_round_trip(clean_emulator: Any) -> None:
    put_group(clean_emulator, "grp", AttestationMechanism.create_with_x509_ca_refs("fleet-ca"))
    dps = adapter(clean_emulator)
    assert dps.set_group_status("grp", ProvisioningStatus.DISABLED).outcome is StepOutcome.DONE
    assert dps.set_group_status("grp", ProvisioningStatus.DISABLED).outcome is StepOutcome.ALREADY_DONE
    group = dps.get_group("grp")
    assert group is not None
    assert group.status is ProvisioningStatus.DISABLED


def test_status_change_of_a_missing_enrollment_is_not_found(clean_emulator: Any) -> None:
    with pytest.raises(NotFound):
        adapter(clean_emulator).set_enrollment_status("ghost", ProvisioningStatus.DISABLED)


def test_delete_twice_is_done_then_already_done(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-1")
    put_group(clean_emulator, "grp", AttestationMechanism(type="symmetricKey"))
    dps = adapter(clean_emulator)
    assert dps.delete_enrollment("dev-1").outcome is StepOutcome.DONE
    assert dps.delete_enrollment("dev-1").outcome is StepOutcome.ALREADY_DONE
    assert dps.get_enrollment("dev-1") is None
    assert dps.delete_group("grp").outcome is StepOutcome.DONE
    assert dps.delete_group("grp").outcome is StepOutcome.ALREADY_DONE


def test_blocking_enrollment_with_certificate_is_disabled_x509_and_marked(clean_emulator: Any) -> None:
    leaf = make_leaf("member-7", make_ca("Fleet Root"))
    dps = adapter(clean_emulator)
    change = dps.create_blocking_enrollment("member-7", certificate_pem=leaf.pem, marker="evt-1")
    assert change.outcome is StepOutcome.DONE
    got = dps.get_enrollment("member-7")
    assert got is not None
    assert got.status is ProvisioningStatus.DISABLED
    assert got.attestation is AttestationType.X509
    assert got.blocking_marker == "evt-1"
    again = dps.create_blocking_enrollment("member-7", certificate_pem=leaf.pem, marker="evt-2")
    assert again.outcome is StepOutcome.ALREADY_DONE


def test_blocking_enrollment_without_certificate_uses_a_generated_symmetric_key(clean_emulator: Any) -> None:
    dps = adapter(clean_emulator)
    assert dps.create_blocking_enrollment("member-8", certificate_pem=None, marker="evt-1").outcome \
        is StepOutcome.DONE
    got = dps.get_enrollment("member-8")
    assert got is not None
    assert got.attestation is AttestationType.SYMMETRIC_KEY
    assert got.status is ProvisioningStatus.DISABLED
    raw = sdk(clean_emulator).get_individual_enrollment("member-8")
    assert raw.initial_twin.tags[BLOCKING_MARKER_TAG] == "evt-1"


def test_blocking_over_the_devices_own_enrollment_is_a_conflict(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-own")
    with pytest.raises(Conflict):
        adapter(clean_emulator).create_blocking_enrollment("dev-own", certificate_pem=None, marker="evt-1")
    got = adapter(clean_emulator).get_enrollment("dev-own")
    assert got is not None
    assert got.status is ProvisioningStatus.ENABLED


def test_a_blocking_enrollment_someone_re_enabled_is_disabled_again(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "member-9", tags={BLOCKING_MARKER_TAG: "evt-0"})
    change = adapter(clean_emulator).create_blocking_enrollment("member-9", certificate_pem=None, marker="e")
    assert change.outcome is StepOutcome.DONE
    got = adapter(clean_emulator).get_enrollment("member-9")
    assert got is not None
    assert got.status is ProvisioningStatus.DISABLED


# ---- concurrency, faults, auth ------------------------------------------------------------------


def test_a_concurrent_write_between_read_and_write_is_retried_with_a_fresh_etag(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-race")
    dps = adapter(clean_emulator)
    client = dps._client
    real = client.create_or_update
    attempts: list[str | None] = []

    def racing(model: Any) -> Any:
        attempts.append(model.etag)
        if len(attempts) == 1:  # someone else writes the enrollment right before our write
            other = sdk(clean_emulator)
            theirs = other.get_individual_enrollment("dev-race")
            theirs.device_id = "changed-by-someone-else"
            other.create_or_update(theirs)
        return real(model)

    client.create_or_update = racing
    change = dps.set_enrollment_status("dev-race", ProvisioningStatus.DISABLED)
    assert change.outcome is StepOutcome.DONE
    assert len(attempts) == 2
    assert attempts[0] != attempts[1]
    assert calls(clean_emulator, status="412") == 1
    final = sdk(clean_emulator).get_individual_enrollment("dev-race")
    assert final.provisioning_status == "disabled"
    assert final.device_id == "changed-by-someone-else"  # the other writer's change survived


def test_throttled_query_is_retried_after_the_retry_after(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-1")
    set_faults(clean_emulator, rate429=1.0, retryAfter=2, methods=["POST"], services=["dps"])
    sleeps = Sleeps()
    sleeps.between = lambda: clear_faults(clean_emulator)
    listed = list(adapter(clean_emulator, sleeps).iter_enrollments())
    assert [e.registration_id for e in listed] == ["dev-1"]
    assert sleeps.waits
    assert sleeps.waits[0] >= 2.0
    assert calls(clean_emulator, status="429") == 1


def test_server_errors_on_a_query_are_retried_then_succeed(clean_emulator: Any) -> None:
    put_group(clean_emulator, "grp", AttestationMechanism(type="symmetricKey"))
    set_faults(clean_emulator, rate5xx=1.0, status5xx=503, methods=["POST"], services=["dps"])
    sleeps = Sleeps()
    sleeps.between = lambda: clear_faults(clean_emulator)
    assert [g.group_id for g in adapter(clean_emulator, sleeps).iter_groups()] == ["grp"]
    assert len(sleeps.waits) == 1
    assert calls(clean_emulator, status="503") == 1


def test_a_wrong_key_is_auth_failed_without_retries(clean_emulator: Any) -> None:
    parts = dict(p.split("=", 1) for p in clean_emulator.dps_connection_string.split(";"))
    wrong = (f"HostName={parts['HostName']};SharedAccessKeyName={parts['SharedAccessKeyName']};"
             "SharedAccessKey=d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
    sleeps = Sleeps()
    dps = adapter(clean_emulator, sleeps, cs=wrong)
    with pytest.raises(AuthFailed) as info:
        dps.get_enrollment("dev-1")
    assert "d3Jvbmc" not in str(info.value)
    assert sleeps.waits == []
    assert calls(clean_emulator, status="401") == 1


def test_an_explicit_ca_bundle_is_enough_without_the_environment(
    clean_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    # The emulator's CA is made per run, so only the explicit bundle can make this call succeed.
    pinned = DpsProvisioningService.from_connection_string(
        clean_emulator.dps_connection_string, ca_bundle=clean_emulator.ca_bundle
    )
    assert pinned.get_group("grp") is None


# ---- read reuse (ReadCache) -----------------------------------------------------------------------


def enrollment_calls(emu: Any, method: str) -> int:
    """Answered single-enrollment calls (``METHOD /enrollments/{id}``), any status."""
    counters = emu.admin("GET", "/counters")["calls"].get("dps", {})
    return sum(sum(by_status.values()) for op, by_status in counters.items()
               if op.startswith(f"{method} /enrollments/") and "query" not in op)


class Ticks:
    """Injected monotonic clock for the read cache."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_status_change_right_after_a_read_costs_one_get_and_one_put(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-rw")
    dps = adapter(clean_emulator)
    gets, puts = enrollment_calls(clean_emulator, "GET"), enrollment_calls(clean_emulator, "PUT")
    got = dps.get_enrollment("dev-rw")
    assert got is not None
    change = dps.set_enrollment_status("dev-rw", ProvisioningStatus.DISABLED)
    assert (change.outcome, change.before, change.after) == (StepOutcome.DONE, "enabled", "disabled")
    assert enrollment_calls(clean_emulator, "GET") - gets == 1
    assert enrollment_calls(clean_emulator, "PUT") - puts == 1
    assert calls(clean_emulator, status="412") == 0
    # The cached read was consumed: the next change reads afresh.
    assert dps.set_enrollment_status("dev-rw", ProvisioningStatus.ENABLED).outcome is StepOutcome.DONE
    assert enrollment_calls(clean_emulator, "GET") - gets == 2
    assert sdk(clean_emulator).get_individual_enrollment("dev-rw").provisioning_status == "enabled"


def test_a_change_made_behind_the_adapters_back_after_its_read_survives(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-behind")
    dps = adapter(clean_emulator)
    assert dps.get_enrollment("dev-behind") is not None
    other = sdk(clean_emulator)
    theirs = other.get_individual_enrollment("dev-behind")
    theirs.device_id = "renamed-by-someone-else"
    other.create_or_update(theirs)
    change = dps.set_enrollment_status("dev-behind", ProvisioningStatus.DISABLED)
    assert change.outcome is StepOutcome.DONE
    assert calls(clean_emulator, status="412") == 1  # the cached ETag was refused, then re-read
    final = other.get_individual_enrollment("dev-behind")
    assert final.provisioning_status == "disabled"
    assert final.device_id == "renamed-by-someone-else"


def test_a_cached_read_already_in_the_wanted_state_is_checked_afresh(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-flip", status="disabled")
    dps = adapter(clean_emulator)
    assert dps.get_enrollment("dev-flip") is not None  # cached: disabled
    other = sdk(clean_emulator)
    theirs = other.get_individual_enrollment("dev-flip")
    theirs.provisioning_status = "enabled"
    other.create_or_update(theirs)
    change = dps.set_enrollment_status("dev-flip", ProvisioningStatus.DISABLED)
    assert (change.outcome, change.before) == (StepOutcome.DONE, "enabled")
    assert other.get_individual_enrollment("dev-flip").provisioning_status == "disabled"


def test_a_read_older_than_the_max_age_is_not_reused(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-old")
    ticks = Ticks()
    retrier = Retrier(RetryPolicy(timeout=30), sleep=Sleeps(), rng=random.Random(1))
    dps = DpsProvisioningService.from_connection_string(
        clean_emulator.dps_connection_string, retrier=retrier, read_cache=ReadCache(max_age=30, clock=ticks))
    dps.get_enrollment("dev-old")
    ticks.now = 31.0
    assert dps.set_enrollment_status("dev-old", ProvisioningStatus.DISABLED).outcome is StepOutcome.DONE
    assert enrollment_calls(clean_emulator, "GET") == 2


def test_the_confirming_read_after_a_change_is_a_real_get(clean_emulator: Any) -> None:
    put_enrollment(clean_emulator, "dev-confirm")
    dps = adapter(clean_emulator)
    dps.get_enrollment("dev-confirm")
    dps.set_enrollment_status("dev-confirm", ProvisioningStatus.DISABLED)
    other = sdk(clean_emulator)
    theirs = other.get_individual_enrollment("dev-confirm")
    theirs.provisioning_status = "enabled"  # someone undoes it right after our write
    other.create_or_update(theirs)
    gets = enrollment_calls(clean_emulator, "GET")
    confirmed = dps.get_enrollment("dev-confirm")
    assert enrollment_calls(clean_emulator, "GET") == gets + 1
    assert confirmed is not None
    assert confirmed.status is ProvisioningStatus.ENABLED


def test_a_group_status_change_after_a_read_reuses_it(clean_emulator: Any) -> None:
    put_group(clean_emulator, "grp-rw", AttestationMechanism(type="symmetricKey"))
    dps = adapter(clean_emulator)
    assert dps.get_group("grp-rw") is not None
    assert dps.set_group_status("grp-rw", ProvisioningStatus.DISABLED).outcome is StepOutcome.DONE
    counters = clean_emulator.admin("GET", "/counters")["calls"]["dps"]
    group_gets = sum(sum(v.values()) for op, v in counters.items() if op.startswith("GET /enrollmentGroups/"))
    assert group_gets == 1
    assert sdk(clean_emulator).get_enrollment_group("grp-rw").provisioning_status == "disabled"
