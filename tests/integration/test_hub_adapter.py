"""HubDeviceRegistry / HubRegistries against the emulator, through the real azure-iot-hub 2.7.0 SDK.

Devices are arranged with the SDK itself; faults and counters go through the emulator's admin API.
The injected retry ``sleep`` never sleeps: tests use it to change the emulator between attempts.
The one test double is a token credential (Microsoft Entra ID cannot run here): it hands out a fixed
bearer token, which the emulator refuses like any token it cannot verify.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import AuthenticationMechanism, ExportImportDevice

from shared.adapters.iothub import HubDeviceRegistry, HubRegistries
from shared.errors import AuthFailed, HubNotConfigured, NotFound, Throttled
from shared.model import HubDeviceStatus
from shared.plan import StepOutcome
from shared.retry import Retrier, RetryPolicy
from tests.support.doubles import Sleeps, clear_faults, set_faults

pytest.importorskip("emulator.testing", reason="the emulator's test fixtures are not there yet")


def retrier(sleeps: Sleeps | None = None) -> Retrier:
    return Retrier(RetryPolicy(timeout=30), sleep=sleeps or Sleeps(), rng=random.Random(1))


def registry(emu: Any, sleeps: Sleeps | None = None, cs: str | None = None) -> HubDeviceRegistry:
    connection_string = cs or emu.hubs[0]["connectionString"]
    return HubDeviceRegistry.from_connection_string(connection_string, retrier=retrier(sleeps))


def sdk(emu: Any) -> IoTHubRegistryManager:
    return IoTHubRegistryManager.from_connection_string(emu.hubs[0]["connectionString"])


def calls(emu: Any, status: str | None = None, operation: str | None = None) -> int:
    """Answered hub calls, optionally only those with ``status`` or whose operation names ``operation``."""
    hub_counters = emu.admin("GET", "/counters")["calls"]
    total = 0
    for service, ops in hub_counters.items():
        if service in {"dps", "admin"}:
            continue
        for op, by_status in ops.items():
            if operation and operation.lower() not in op.lower():
                continue
            total += sum(n for s, n in by_status.items() if status is None or s == status)
    return total


class BulkSpy:
    """Counts the adapter's bulk registry calls (the emulator's counters count devices, not calls)."""

    def __init__(self, reg: HubDeviceRegistry) -> None:
        self.calls = 0
        manager = reg.client.manager
        real = manager.bulk_create_or_update_devices

        def spy(devices: list[Any]) -> Any:
            self.calls += 1
            return real(devices)

        manager.bulk_create_or_update_devices = spy


def create_devices(emu: Any, ids: list[str], **kwargs: Any) -> None:
    rm = sdk(emu)
    for start in range(0, len(ids), 100):
        items = [ExportImportDevice(id=d, import_mode="create", status="enabled", **kwargs)
                 for d in ids[start:start + 100]]
        result = rm.bulk_create_or_update_devices(items)
        assert result.is_successful, result.errors


# ---- single device --------------------------------------------------------------------------------


def test_get_maps_the_identity_and_absent_is_none(clean_emulator: Any) -> None:
    sdk(clean_emulator).create_device_with_sas("dev-1", None, None, "enabled")
    reg = registry(clean_emulator)
    assert reg.hub == clean_emulator.hubs[0]["hostName"]
    got = reg.get("dev-1")
    assert got is not None
    assert (got.device_id, got.status, got.hub) == ("dev-1", HubDeviceStatus.ENABLED, reg.hub)
    assert got.etag
    assert reg.get("nobody") is None


def test_disable_keeps_keys_and_edge_capability_and_is_idempotent(clean_emulator: Any) -> None:
    rm = sdk(clean_emulator)
    rm.create_device_with_sas("edge-1", None, None, "enabled", iot_edge=True)
    before = rm.get_device("edge-1")
    reg = registry(clean_emulator)
    change = reg.disable("edge-1", reason="lost: evt-1")
    assert (change.outcome, change.before, change.after) == (StepOutcome.DONE, "enabled", "disabled")
    after = rm.get_device("edge-1")
    assert after.status == "disabled"
    assert after.status_reason == "lost: evt-1"
    assert after.authentication.symmetric_key.primary_key == before.authentication.symmetric_key.primary_key
    assert after.capabilities.iot_edge is True
    assert reg.disable("edge-1", reason="again").outcome is StepOutcome.ALREADY_DONE
    assert reg.enable("edge-1").outcome is StepOutcome.DONE
    assert rm.get_device("edge-1").status == "enabled"
    assert reg.enable("edge-1").outcome is StepOutcome.ALREADY_DONE


def test_disable_of_a_missing_device_is_not_found(clean_emulator: Any) -> None:
    with pytest.raises(NotFound):
        registry(clean_emulator).disable("ghost")


def test_delete_twice_is_done_then_already_done(clean_emulator: Any) -> None:
    sdk(clean_emulator).create_device_with_sas("dev-1", None, None, "enabled")
    reg = registry(clean_emulator)
    assert reg.delete("dev-1").outcome is StepOutcome.DONE
    assert reg.get("dev-1") is None
    assert reg.delete("dev-1").outcome is StepOutcome.ALREADY_DONE


def test_a_concurrent_write_between_read_and_write_is_retried_with_a_fresh_etag(clean_emulator: Any) -> None:
    rm = sdk(clean_emulator)
    rm.create_device_with_sas("dev-race", None, None, "enabled")
    reg = registry(clean_emulator)
    devices_ops = reg.client.protocol.devices
    real = devices_ops.create_or_update_identity
    seen: list[str] = []

    def racing(device_id: str, device: Any, if_match: str | None = None, **kw: Any) -> Any:
        seen.append(str(if_match))
        if len(seen) == 1:  # someone else updates the device right before our write
            theirs = rm.get_device(device_id)
            theirs.status_reason = "touched by someone else"
            rm.protocol.devices.create_or_update_identity(device_id, theirs, f'"{theirs.etag}"')
        return real(device_id, device, if_match, **kw)

    racing.metadata = real.metadata  # type: ignore[attr-defined]  # the SDK reads its URL from here
    devices_ops.create_or_update_identity = racing
    change = reg.disable("dev-race", reason="stolen")
    assert change.outcome is StepOutcome.DONE
    assert len(seen) == 2
    assert seen[0] != seen[1]
    assert calls(clean_emulator, status="412") == 1
    final = rm.get_device("dev-race")
    assert (final.status, final.status_reason) == ("disabled", "stolen")


# ---- bulk and listing -----------------------------------------------------------------------------


def device_gets(emu: Any) -> int:
    """Single-device reads the hub answered (the adapter's per-device round trips)."""
    return calls(emu, operation="GET /devices/")


def test_bulk_disable_and_delete_250_ca_devices_in_three_calls_each(clean_emulator: Any) -> None:
    ids = [f"fleet-{i:03d}" for i in range(250)]
    create_devices(clean_emulator, ids, authentication=AuthenticationMechanism(type="certificateAuthority"))
    reg = registry(clean_emulator)
    spy = BulkSpy(reg)
    changed: list[str] = []
    for start in range(0, 250, 100):
        result = reg.bulk_disable(ids[start:start + 100], reason="group lost")
        assert not result.failed
        changed.extend(result.changed)
    assert sorted(changed) == ids
    assert spy.calls == 3
    assert device_gets(clean_emulator) == 0  # CA devices: one query + one bulk POST per 100, nothing else
    statuses = {d.device_id: d.status for d in reg.iter_devices()}
    assert set(statuses.values()) == {HubDeviceStatus.DISABLED}
    kept = sdk(clean_emulator).get_device("fleet-123")
    assert kept.authentication.type == "certificateAuthority"
    assert kept.status_reason == "group lost"

    again = reg.bulk_disable(ids[:100])
    assert again.changed == ()
    assert len(again.unchanged) == 100
    assert spy.calls == 3  # nothing left to write

    deleted: list[str] = []
    for start in range(0, 250, 100):
        deleted.extend(reg.bulk_delete(ids[start:start + 100]).changed)
    assert sorted(deleted) == ids
    assert spy.calls == 6
    assert list(reg.iter_devices()) == []


def test_one_bulk_disable_gives_each_device_its_own_status_reason_cut_to_128(clean_emulator: Any) -> None:
    ids = [f"own-{i:02d}" for i in range(5)]
    create_devices(clean_emulator, ids, authentication=AuthenticationMechanism(type="certificateAuthority"))
    reg = registry(clean_emulator)
    spy = BulkSpy(reg)
    reasons = {d: f"stolen: event {d}" for d in ids[:4]} | {ids[4]: "x" * 300}
    assert sorted(reg.bulk_disable(ids, reason=reasons).changed) == ids
    assert spy.calls == 1
    rm = sdk(clean_emulator)
    assert rm.get_device("own-02").status_reason == "stolen: event own-02"
    assert rm.get_device("own-04").status_reason == "x" * 128


def test_bulk_disable_of_symmetric_key_devices_keeps_their_keys(clean_emulator: Any) -> None:
    ids = [f"sym-{i:02d}" for i in range(12)]
    create_devices(clean_emulator, ids)
    rm = sdk(clean_emulator)
    keys_before = {d: rm.get_device(d).authentication.symmetric_key.primary_key for d in ids}
    gets_before = device_gets(clean_emulator)
    reg = registry(clean_emulator)
    spy = BulkSpy(reg)
    result = reg.bulk_disable(ids, reason="group stolen")
    assert sorted(result.changed) == ids
    assert spy.calls == 1
    assert device_gets(clean_emulator) - gets_before == len(ids)  # keys come only with the identity
    for device_id in ids:
        device = rm.get_device(device_id)
        assert device.status == "disabled"
        assert device.authentication.symmetric_key.primary_key == keys_before[device_id]


def test_bulk_delete_counts_missing_devices_as_unchanged(clean_emulator: Any) -> None:
    create_devices(clean_emulator, ["a-1", "a-2"])
    result = registry(clean_emulator).bulk_delete(["a-1", "ghost", "a-2"])
    assert sorted(result.changed) == ["a-1", "a-2"]
    assert result.unchanged == ("ghost",)
    assert not result.failed


def test_bulk_disable_reports_missing_devices_as_failed(clean_emulator: Any) -> None:
    create_devices(clean_emulator, ["b-1"])
    result = registry(clean_emulator).bulk_disable(["b-1", "ghost"])
    assert result.changed == ("b-1",)
    assert dict(result.failed) == {"ghost": "DeviceNotFound"}


def test_bulk_calls_over_one_hundred_devices_are_refused(clean_emulator: Any) -> None:
    reg = registry(clean_emulator)
    ids = [f"x-{i}" for i in range(101)]
    with pytest.raises(ValueError, match="at most 100"):
        reg.bulk_disable(ids)
    with pytest.raises(ValueError, match="at most 100"):
        reg.bulk_delete(ids)


def test_iter_devices_follows_continuation_across_pages(clean_emulator: Any) -> None:
    ids = [f"p-{i:02d}" for i in range(25)]
    create_devices(clean_emulator, ids)
    before = calls(clean_emulator, operation="query")
    listed = [d.device_id for d in registry(clean_emulator).iter_devices(page_size=10)]
    assert sorted(listed) == ids
    assert calls(clean_emulator, operation="query") - before >= 3


# ---- faults and auth ------------------------------------------------------------------------------


def test_throttled_bulk_call_is_retried_after_the_retry_after(clean_emulator: Any) -> None:
    create_devices(clean_emulator, ["t-1", "t-2"])
    set_faults(clean_emulator, rate429=1.0, retryAfter=2, methods=["POST"], paths=["/devices$"])
    sleeps = Sleeps()
    sleeps.between = lambda: clear_faults(clean_emulator)
    reg = registry(clean_emulator, sleeps)
    spy = BulkSpy(reg)
    result = reg.bulk_delete(["t-1", "t-2"])
    assert sorted(result.changed) == ["t-1", "t-2"]
    assert sleeps.waits
    assert sleeps.waits[0] >= 2.0
    assert spy.calls == 2
    assert calls(clean_emulator, status="429") >= 1


def test_server_errors_on_a_query_are_retried_then_succeed(clean_emulator: Any) -> None:
    create_devices(clean_emulator, ["q-1"])
    set_faults(clean_emulator, rate5xx=1.0, status5xx=503, methods=["POST"], paths=["/devices/query"])
    sleeps = Sleeps()
    sleeps.between = lambda: clear_faults(clean_emulator)
    assert [d.device_id for d in registry(clean_emulator, sleeps).iter_devices()] == ["q-1"]
    assert len(sleeps.waits) == 1
    assert calls(clean_emulator, status="503") == 1


def test_a_wrong_key_is_auth_failed_without_retries(clean_emulator: Any) -> None:
    parts = dict(p.split("=", 1) for p in clean_emulator.hubs[0]["connectionString"].split(";"))
    wrong = (f"HostName={parts['HostName']};SharedAccessKeyName={parts['SharedAccessKeyName']};"
             "SharedAccessKey=d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
    sleeps = Sleeps()
    with pytest.raises(AuthFailed) as info:
        registry(clean_emulator, sleeps, cs=wrong).get("dev-1")
    assert "d3Jvbmc" not in str(info.value)
    assert sleeps.waits == []
    assert calls(clean_emulator, status="401") == 1


# ---- registries -----------------------------------------------------------------------------------


class FixedTokenCredential:
    """Stands in for DefaultAzureCredential: Entra ID is unreachable here."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("not-a-real-token", 4_102_444_800)


def test_registries_route_by_host_name_and_refuse_unknown_hubs(clean_emulator: Any) -> None:
    hub = clean_emulator.hubs[0]
    regs = HubRegistries({hub["hostName"]: hub["connectionString"]}, retrier=retrier())
    assert list(regs.hubs()) == [hub["hostName"]]
    reg = regs.for_hub(hub["hostName"].upper())
    assert reg.hub == hub["hostName"]
    assert regs.for_hub(hub["hostName"]) is reg
    sdk(clean_emulator).create_device_with_sas("r-1", None, None, "enabled")
    found = reg.get("r-1")
    assert found is not None
    assert found.device_id == "r-1"
    with pytest.raises(HubNotConfigured):
        regs.for_hub("elsewhere.azure-devices.net")


def test_identity_based_hub_asks_the_credential_for_an_iot_hub_token(clean_emulator: Any) -> None:
    hub = clean_emulator.hubs[0]
    credential = FixedTokenCredential()
    sleeps = Sleeps()
    regs = HubRegistries({hub["hostName"]: None}, credential=credential, retrier=retrier(sleeps))
    with pytest.raises(AuthFailed):
        regs.for_hub(hub["hostName"]).get("dev-1")
    assert credential.scopes
    assert set(credential.scopes) == {("https://iothubs.azure.net/.default",)}
    assert sleeps.waits == []
    assert calls(clean_emulator, status="401") == 1


def test_identity_fallback_serves_hubs_missing_from_the_map(clean_emulator: Any) -> None:
    hub = clean_emulator.hubs[1]["hostName"]
    credential = FixedTokenCredential()
    strict = HubRegistries({}, credential=credential, retrier=retrier())
    with pytest.raises(HubNotConfigured):
        strict.for_hub(hub)
    lenient = HubRegistries({}, credential=credential, retrier=retrier(), identity_fallback=True)
    reg = lenient.for_hub(hub)
    assert reg.hub == hub
    with pytest.raises(AuthFailed):  # the emulator accepts keys only; the bearer token was really sent
        reg.get("dev-1")
    assert credential.scopes


def test_bulk_disable_retries_only_the_devices_whose_etag_moved(clean_emulator: Any) -> None:
    ids = ["e-1", "e-2", "e-3"]
    create_devices(clean_emulator, ids, authentication=AuthenticationMechanism(type="certificateAuthority"))
    reg = registry(clean_emulator)
    manager = reg.client.manager
    real = manager.bulk_create_or_update_devices
    batches: list[list[str]] = []

    def racing(devices: list[Any]) -> Any:
        batches.append([d.id for d in devices])
        if len(batches) == 1:  # someone else touches e-2 between our query and our bulk write
            rm = sdk(clean_emulator)
            theirs = rm.get_device("e-2")
            theirs.status_reason = "touched"
            rm.protocol.devices.create_or_update_identity("e-2", theirs, f'"{theirs.etag}"')
        return real(devices)

    manager.bulk_create_or_update_devices = racing
    result = reg.bulk_disable(ids, reason="lost")
    assert batches == [ids, ["e-2"]]
    assert sorted(result.changed) == ids
    assert not result.failed
    assert sdk(clean_emulator).get_device("e-2").status == "disabled"


def test_an_explicit_ca_bundle_is_enough_without_the_environment(
    clean_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    # The emulator's CA is made per run, so only the explicit bundle can make this call succeed.
    hub = clean_emulator.hubs[0]
    pinned = HubDeviceRegistry.from_connection_string(
        hub["connectionString"], retrier=retrier(), ca_bundle=clean_emulator.ca_bundle
    )
    assert pinned.get("dev-1") is None


# ---- read reuse (ReadCache) -----------------------------------------------------------------------


def test_a_disable_right_after_a_read_costs_one_get_and_one_put(clean_emulator: Any) -> None:
    sdk(clean_emulator).create_device_with_sas("dev-rw", None, None, "enabled")
    reg = registry(clean_emulator)
    gets, puts = device_gets(clean_emulator), calls(clean_emulator, operation="PUT /devices/")
    assert reg.get("dev-rw") is not None
    change = reg.disable("dev-rw", reason="lost: evt-rw")
    assert (change.outcome, change.before, change.after) == (StepOutcome.DONE, "enabled", "disabled")
    assert device_gets(clean_emulator) - gets == 1
    assert calls(clean_emulator, operation="PUT /devices/") - puts == 1
    assert calls(clean_emulator, status="412") == 0
    assert reg.enable("dev-rw").outcome is StepOutcome.DONE  # the cached read was consumed: read afresh
    assert device_gets(clean_emulator) - gets == 2


def test_new_keys_written_behind_the_adapters_back_after_its_read_survive_a_disable(
        clean_emulator: Any) -> None:
    rm = sdk(clean_emulator)
    rm.create_device_with_sas("dev-behind", None, None, "enabled")
    reg = registry(clean_emulator)
    assert reg.get("dev-behind") is not None  # cached, with the old keys
    theirs = rm.get_device("dev-behind")
    new_key = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleSE="
    theirs.authentication.symmetric_key.primary_key = new_key
    rm.protocol.devices.create_or_update_identity("dev-behind", theirs, f'"{theirs.etag}"')
    assert reg.disable("dev-behind", reason="stolen").outcome is StepOutcome.DONE
    assert calls(clean_emulator, status="412") == 1  # the cached etag was refused, then re-read
    final = rm.get_device("dev-behind")
    assert (final.status, final.status_reason) == ("disabled", "stolen")
    assert final.authentication.symmetric_key.primary_key == new_key  # the stale keys were not written back


def test_a_device_deleted_after_its_read_is_not_found_and_not_recreated(clean_emulator: Any) -> None:
    rm = sdk(clean_emulator)
    rm.create_device_with_sas("dev-gone", None, None, "enabled")
    reg = registry(clean_emulator)
    assert reg.get("dev-gone") is not None
    rm.delete_device("dev-gone")
    with pytest.raises(NotFound):
        reg.disable("dev-gone")
    assert reg.get("dev-gone") is None


def test_a_cached_read_already_disabled_is_checked_afresh(clean_emulator: Any) -> None:
    rm = sdk(clean_emulator)
    rm.create_device_with_sas("dev-flip", None, None, "disabled")
    reg = registry(clean_emulator)
    assert reg.get("dev-flip") is not None  # cached: disabled
    theirs = rm.get_device("dev-flip")
    theirs.status = "enabled"
    rm.protocol.devices.create_or_update_identity("dev-flip", theirs, f'"{theirs.etag}"')
    change = reg.disable("dev-flip", reason="lost")
    assert (change.outcome, change.before) == (StepOutcome.DONE, "enabled")
    assert rm.get_device("dev-flip").status == "disabled"


def test_the_read_after_a_disable_is_a_real_get(clean_emulator: Any) -> None:
    rm = sdk(clean_emulator)
    rm.create_device_with_sas("dev-confirm", None, None, "enabled")
    reg = registry(clean_emulator)
    reg.get("dev-confirm")
    reg.disable("dev-confirm", reason="lost")
    theirs = rm.get_device("dev-confirm")
    theirs.status = "enabled"  # someone undoes it right after our write
    rm.protocol.devices.create_or_update_identity("dev-confirm", theirs, f'"{theirs.etag}"')
    gets = device_gets(clean_emulator)
    seen = reg.get("dev-confirm")
    assert device_gets(clean_emulator) == gets + 1
    assert seen is not None
    assert seen.status is HubDeviceStatus.ENABLED


def test_bulk_disable_pays_for_each_key_read_before_making_it(clean_emulator: Any) -> None:
    """Issue 11 item 7: symmetric-key devices cost a GET each (keys); the budget pays them first."""
    sym = [f"paid-sym-{i:02d}" for i in range(7)]
    ca = [f"paid-ca-{i:02d}" for i in range(5)]
    create_devices(clean_emulator, sym)
    create_devices(clean_emulator, ca, authentication=AuthenticationMechanism(type="certificateAuthority"))
    reg = registry(clean_emulator)
    paid: list[tuple[int, int]] = []  # (reads paid, GETs the hub had answered when paid)
    result = reg.bulk_disable(sym + ca, spend=lambda n: paid.append((n, device_gets(clean_emulator))))
    assert sorted(result.changed) == sorted(sym + ca)
    assert paid == [(7, 0)], "all 7 key reads were paid, before the first of them was made"
    assert device_gets(clean_emulator) == 7
    assert reg.bulk_disable(sym, spend=lambda n: paid.append((n, -1))).unchanged == tuple(sym)
    assert len(paid) == 1, "already disabled devices need no read and cost nothing more"


def test_a_throttled_bulk_disable_tried_again_does_not_read_the_keys_twice(clean_emulator: Any) -> None:
    """The identities read for their keys are kept until the POST answers: the caller's next attempt after a
    429 reads (and pays for) only devices whose etag moved meanwhile."""
    sym = [f"again-sym-{i:02d}" for i in range(6)]
    create_devices(clean_emulator, sym)
    once = Retrier(RetryPolicy(attempts=1, timeout=30), sleep=Sleeps(), rng=random.Random(1))
    reg = HubDeviceRegistry.from_connection_string(clean_emulator.hubs[0]["connectionString"], retrier=once)
    paid: list[int] = []
    set_faults(clean_emulator, rate429=1.0, retryAfter=1, methods=["POST"], paths=["/devices$"])
    with pytest.raises(Throttled):
        reg.bulk_disable(sym, spend=paid.append)
    clear_faults(clean_emulator)
    assert (paid, device_gets(clean_emulator)) == ([6], 6)
    moved = sdk(clean_emulator).get_device(sym[0])  # one identity changes between the two attempts
    moved.status_reason = "touched"
    sdk(clean_emulator).protocol.devices.create_or_update_identity(sym[0], moved, f'"{moved.etag}"')

    result = reg.bulk_disable(sym, spend=paid.append)

    assert sorted(result.changed) == sorted(sym)
    assert (paid, device_gets(clean_emulator)) == ([6, 1], 8), "only the moved identity was read again"
    keys = sdk(clean_emulator).get_device(sym[1]).authentication.symmetric_key
    assert keys.primary_key, "the kept identity still carried its keys into the write"
