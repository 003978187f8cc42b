"""Revocation end to end, seen through Microsoft's unmodified Node.js device SDK over HTTPS.

The emulator runs in standard-ports mode (DPS and each hub on port 443 of their own 127.x.y.z address), so
the SDK dials host names exactly as DPS returns them. For each attestation — symmetric key (individual,
group) and X.509 (individual self-signed, group via intermediate, group via root; the certificate goes in
the TLS handshake) — the device registers (202 + polling, done by the SDK) and sends before revocation;
after the engine applies the event it is refused with what DPS and IoT Hub give (DPS: operation status
``disabled`` — which the SDK surfaces as ``SyntaxError('status is disabled')`` — or 401; hub: 401
``UnauthorizedError``); its sibling keeps working; ``found`` lets it back. The emulator's call counters show
each registration took the 202 + polling flow (PUT → 202 ``assigning``, then the operation GET), and each
refusal came where DPS gives it (the poll's ``disabled``, or 401 on the PUT). Which refusal each attestation
gets after ``lost``, and why: emulator/README.md, "Device SDKs".
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from provisioningserviceclient.models import AttestationMechanism, EnrollmentGroup, IndividualEnrollment

from devhost import node_device as node_sdk
from emulator import sas
from emulator.testing import EmulatorHandle, start_emulator
from shared.adapters.journal_tables import TableJournal
from shared.events import LifecycleEvent
from shared.policy import DEFAULT_POLICY
from tests.integration import engine_fleet as fleet
from tests.support.certs import IssuedCert, make_ca, make_intermediate, make_leaf, make_self_signed_leaf

pytestmark = [pytest.mark.slow, pytest.mark.skipif(node_sdk.missing() is not None,
                                                   reason=str(node_sdk.missing()))]


@pytest.fixture(scope="module")
def std_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    try:
        handle = start_emulator(tmp_path_factory.mktemp("emulator-443"), standard_ports=True)
    except OSError as exc:  # not root, or no loopback block free
        pytest.skip(f"standard-ports mode unavailable: {exc}")
    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = handle.ca_bundle  # the service SDKs used by the engine trust it
    try:
        yield handle
    finally:
        handle.emulator.stop()
        if saved is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved


@pytest.fixture
def emu(std_emulator: EmulatorHandle) -> EmulatorHandle:
    std_emulator.reset()
    return std_emulator


def apply_event(emu: EmulatorHandle, journal: TableJournal, event: LifecycleEvent) -> Any:
    """The product's engine over the production adapters, connected to the emulator by connection string."""
    from unprovision.engine.core import Engine
    from unprovision.group.inprocess import GroupWork

    dps, registries = fleet.engine_ports(emu)
    engine = Engine(dps=dps, registries=registries, journal=journal, policy=DEFAULT_POLICY,
                    group_work=GroupWork())
    return engine.apply(event)


def pem_files(tmp: Path, leaf: IssuedCert, *chain: IssuedCert) -> tuple[str, str]:
    cert, key = tmp / f"{leaf.cn}.pem", tmp / f"{leaf.cn}-key.pem"
    cert.write_text("".join(c.pem for c in (leaf, *chain)))
    key.write_text(leaf.key_pem)
    return str(cert), str(key)


Pair = tuple[node_sdk.SdkDevice, node_sdk.SdkDevice, str | None]


def build(emu: EmulatorHandle, kind: str, tmp: Path) -> Pair:
    """Enrollments through the provisioning service SDK; (device, sibling, certificate for the event)."""
    psc = fleet.sdk(emu)
    hubs = fleet.hub_hosts(emu)
    if kind == "symmetric-individual":
        devices = []
        for reg_id in ("ind-a", "ind-b"):
            key = fleet.new_key()
            psc.create_or_update(IndividualEnrollment.create(reg_id, fleet.symmetric(key),
                                                             iot_hub_host_name=hubs[0]))
            devices.append(node_sdk.SdkDevice(reg_id, symmetric_key=key))
        return devices[0], devices[1], None
    if kind == "symmetric-group":
        group_key = fleet.new_key()
        psc.create_or_update(EnrollmentGroup.create("grp-sym", fleet.symmetric(group_key),
                                                    allocation_policy="hashed", iot_hubs=hubs))
        return (node_sdk.SdkDevice("sym-a", symmetric_key=sas.derive_device_key(group_key, "sym-a")),
                node_sdk.SdkDevice("sym-b", symmetric_key=sas.derive_device_key(group_key, "sym-b")), None)
    if kind == "x509-individual":
        devices = []
        for reg_id in ("cam-a", "cam-b"):
            leaf = make_self_signed_leaf(reg_id)
            attestation = AttestationMechanism.create_with_x509_client_certs(leaf.pem)
            psc.create_or_update(IndividualEnrollment.create(reg_id, attestation, iot_hub_host_name=hubs[1]))
            cert, key = pem_files(tmp, leaf)
            devices.append(node_sdk.SdkDevice(reg_id, cert_file=cert, key_file=key))
        return devices[0], devices[1], None
    root = make_ca(f"{kind} root")
    inter = make_intermediate(f"{kind} intermediate", root)
    signer = inter if kind == "x509-group-intermediate" else root
    attestation = AttestationMechanism.create_with_x509_signing_certs(signer.pem)
    psc.create_or_update(EnrollmentGroup.create("grp-x509", attestation, iot_hub_host_name=hubs[0]))
    leaves = [make_leaf(reg_id, inter) for reg_id in ("gcam-a", "gcam-b")]
    devices = [node_sdk.SdkDevice(leaf.cn, cert_file=c, key_file=k)
               for leaf in leaves for c, k in [pem_files(tmp, leaf, inter)]]
    return devices[0], devices[1], leaves[0].pem + inter.pem


REGISTER = "PUT /{id_scope}/registrations/{registration_id}/register"
POLL = "GET /{id_scope}/registrations/{registration_id}/operations/{operation_id}"


def dps_calls(emu: EmulatorHandle) -> Counter[tuple[str, str]]:
    """The emulator's DPS call counters: (operation, HTTP status) -> calls."""
    calls: dict[str, dict[str, int]] = emu.admin("GET", "/counters")["calls"].get("dps", {})
    return Counter({(op, status): n for op, by in calls.items() for status, n in by.items()})


def run_counted(emu: EmulatorHandle, device: node_sdk.SdkDevice,
                **options: Any) -> tuple[node_sdk.SdkResult, Counter[tuple[str, str]]]:
    """One SDK call and the DPS calls it made (tests run one at a time: nothing else talks to DPS)."""
    before = dps_calls(emu)
    result = node_sdk.run(emu.config, device, **options)
    return result, dps_calls(emu) - before


def assert_working(emu: EmulatorHandle, device: node_sdk.SdkDevice) -> node_sdk.SdkResult:
    result, calls = run_counted(emu, device)
    assert result.registered, (device.registration_id, result)
    assert result.sent, (device.registration_id, result)
    # 202 + polling: the PUT answered 202 "assigning", the operation GET gave the final state
    assert calls == Counter({(REGISTER, "202"): 1, (POLL, "200"): 1}), calls
    return result


# What DPS answers a device after `lost` (emulator/README.md, "Device SDKs"): a disabled individual
# enrollment (its own, or the blocking one made from the certificate the event carries) → the poll's status
# "disabled"; a group member without a certificate gets a blocking symmetric-key enrollment with keys DPS
# generated, so its own (group-derived) key no longer authenticates → 401 on the PUT.
REFUSAL = {"symmetric-individual": "disabled", "symmetric-group": "401", "x509-individual": "disabled",
           "x509-group-intermediate": "disabled", "x509-group-root": "disabled"}


def assert_refused(emu: EmulatorHandle, device: node_sdk.SdkDevice, hub: str, device_id: str,
                   expected: str) -> None:
    # one SDK run: register (refused), then still send to the hub the device knew
    result, calls = run_counted(emu, device, fallback_hub=hub, device_id=device_id)
    assert not result.registered, (device.registration_id, result)
    error = result.registration_error or {}
    if expected == "disabled":  # 202, then the poll's final status "disabled": the SDK's SyntaxError
        assert calls == Counter({(REGISTER, "202"): 1, (POLL, "200"): 1}), calls
        assert error.get("resultStatus") == "disabled", error
        assert error.get("name") == "SyntaxError", error
    else:  # DPS answers the PUT itself with 401: the SDK's UnauthorizedError, no polling
        assert calls == Counter({(REGISTER, "401"): 1}), calls
        assert error.get("statusCode") == 401, error
        assert error.get("name") == "UnauthorizedError", error
    assert result.send is not None, result
    assert not result.sent
    assert result.send.get("statusCode") == 401, result.send  # IoT Hub: 401 IotHubUnauthorizedAccess
    assert result.send.get("name") == "UnauthorizedError", result.send


KINDS = ["symmetric-individual", "symmetric-group", "x509-individual", "x509-group-intermediate",
         "x509-group-root"]


@pytest.mark.parametrize("kind", KINDS)
def test_node_sdk_device_is_cut_off_by_revocation_and_let_back_by_found(
        emu: EmulatorHandle, table_journal: TableJournal, tmp_path: Path, kind: str) -> None:
    device, sibling, certificate = build(emu, kind, tmp_path)
    before = assert_working(emu, device)
    assert_working(emu, sibling)
    assert before.registration is not None
    hub, device_id = before.registration["assignedHub"], before.registration["deviceId"]
    assert ":" not in hub, "standard-ports mode names hubs without a port"
    extra = {"certificate": certificate} if certificate else {}
    outcome = apply_event(emu, table_journal, fleet.event(f"e-{kind}", "lost",
                                                          reg_id=device.registration_id, **extra))
    assert outcome.status == "completed", outcome.error
    assert_refused(emu, device, hub, device_id, REFUSAL[kind])
    assert_working(emu, sibling)
    found_event = fleet.event(f"e-{kind}-found", "found", reg_id=device.registration_id)
    found = apply_event(emu, table_journal, found_event)
    assert found.status == "completed", found.error
    assert_working(emu, device)


def test_node_sdk_registration_follows_assigning_polls_and_retry_after(emu: EmulatorHandle) -> None:
    """Two extra 202 ``assigning`` answers, Retry-After 1: the SDK waits and polls until ``assigned``."""
    key = fleet.new_key()
    fleet.sdk(emu).create_or_update(IndividualEnrollment.create("slow-1", fleet.symmetric(key)))
    emu.admin("PUT", "/registration", json={"retryAfter": 1, "assigningPolls": 2})
    started = time.monotonic()
    result = node_sdk.run(emu.config, node_sdk.SdkDevice("slow-1", symmetric_key=key), send=False)
    elapsed = time.monotonic() - started
    assert result.registered, result
    assert elapsed >= 3, "the SDK should have waited Retry-After before each of three polls"
    counts: dict[str, Any] = emu.admin("GET", "/counters")["calls"]["dps"]
    polls = sum(n for op, by in counts.items() if "/operations/" in op for n in by.values())
    assert polls == 3


def test_the_demo_fleet_probe_asks_the_node_sdk_before_and_after_a_revocation(
        emu: EmulatorHandle, tmp_path: Path) -> None:
    """The demo's before/after probe (``devhost.fleet_probe``) through the Node SDK in standard-ports mode."""
    from devhost.demo_fleet import seed_fleet
    from devhost.fleet_probe import FleetProbe

    devices = {d.registration_id: d for d in seed_fleet(emu.config, tmp_path)}
    probe = FleetProbe(emu.config, tmp_path)
    assert probe.device_sdk == "node"
    # one device of each kind: X.509 group (via intermediate and via root), X.509 individual, symmetric key
    # individual and group through the SDK; TPM through the Python client (its stand-in header)
    chosen = {d.kind: d for d in devices.values()}
    chosen["x509-group-root"] = devices["sensor-r-010"]
    assert set(chosen) == {"x509-group", "x509-group-root", "x509-individual", "sas-individual", "sas-group",
                           "tpm"}
    rows = {row.registration_id: row for row in probe.table(list(chosen.values()))}
    assert {(r.can_register, r.can_send) for r in rows.values()} == {("yes", "yes")}, rows
    target = chosen["x509-individual"]
    psc = fleet.sdk(emu)
    enrollment = psc.get_individual_enrollment(target.registration_id)
    enrollment.provisioning_status = "disabled"
    psc.create_or_update(enrollment)
    hub_index = fleet.hub_hosts(emu).index(str(target.hub))
    registry = emu.registry_manager(hub_index)
    identity = registry.get_device(target.registration_id)
    identity.status = "disabled"  # keep its selfSigned thumbprints; only the status changes
    registry.protocol.devices.create_or_update_identity(target.registration_id, identity, identity.etag)
    after = probe.probe(target)
    assert (after.can_register, after.can_send) == ("no (disabled)", "no (401)"), after
    assert probe.probe(chosen["sas-individual"]).can_send == "yes"
