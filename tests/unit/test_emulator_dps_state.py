"""Unit tests of the DPS emulator's pure parts: store, ETags, IDs, certificates, paging, seeding, matching.

No I/O: requests are built in memory and dispatched through the DPS router; a recording stand-in plays the hub
(the real HubState is exercised by the conformance tests).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from emulator import sas
from emulator.dps import DpsService, DpsState
from emulator.dps.x509 import PresentedChain, certificate_info
from emulator.http import Request, ServiceError
from tests.conformance.certs_helper import (
    chain_header,
    make_ca,
    make_intermediate,
    make_leaf,
    make_self_signed_leaf,
    thumbprint,
)

SCOPE = "0ne00000001"


class RecordingHub:
    """Stands in for HubState: remembers what DPS provisioned."""

    def __init__(self, host_name: str) -> None:
        self.host_name = host_name
        self.devices: dict[str, dict[str, Any]] = {}

    def provision_device(self, device_id: str, *, auth: dict[str, Any]) -> dict[str, Any]:
        self.devices[device_id] = auth
        return {"deviceId": device_id, "authentication": auth}


def sym_enrollment(reg_id: str, status: str = "enabled", **extra: Any) -> dict[str, Any]:
    return {"registrationId": reg_id, "attestation": {"type": "symmetricKey"}, "provisioningStatus": status,
            **extra}


def sym_group(group_id: str, status: str = "enabled") -> dict[str, Any]:
    return {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey"},
            "provisioningStatus": status}


def x509_group(group_id: str, signer_pem: str, status: str = "enabled") -> dict[str, Any]:
    signing = {"primary": {"certificate": signer_pem}}
    return {"enrollmentGroupId": group_id, "provisioningStatus": status,
            "attestation": {"type": "x509", "x509": {"signingCertificates": signing}}}


def register(service: DpsService, reg_id: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Drive the device endpoint in memory; returns (status, body) — 401s come back as (401, {})."""
    body = f'{{"registrationId":"{reg_id}"}}'.encode()
    request = Request("PUT", f"/{SCOPE}/registrations/{reg_id}/register", {"api-version": "2021-06-01"},
                      {"content-type": "application/json", **headers}, body)
    try:
        service.authorize(request)
        response = service.router.dispatch(request)
        if response.status == 202:  # DPS flow: 202 assigning, then the operation-status GET
            path = f"/{SCOPE}/registrations/{reg_id}/operations/{response.body['operationId']}"
            poll = Request("GET", path, {"api-version": "2021-06-01"}, dict(headers), b"")
            response = service.router.dispatch(poll)
    except ServiceError as err:
        return err.status, {}
    return response.status, response.body


def device_sas(reg_id: str, key: str) -> dict[str, str]:
    return {"authorization": sas.make_token(f"{SCOPE}/registrations/{reg_id}", key, policy="registration")}


@pytest.fixture
def state() -> DpsState:
    return DpsState()


@pytest.fixture
def hubs() -> list[RecordingHub]:
    return [RecordingHub("127.0.0.1:1001"), RecordingHub("127.0.0.1:1002")]


@pytest.fixture
def service(state: DpsState, hubs: list[RecordingHub]) -> DpsService:
    return DpsService(state, hubs, SCOPE, {"provisioningserviceowner": base64.b64encode(b"k" * 32).decode()})


def test_put_generates_64_byte_keys_and_a_quoted_etag(state: DpsState) -> None:
    doc = state.put_enrollment("dev-1", sym_enrollment("dev-1"))
    assert len(base64.b64decode(doc["attestation"]["symmetricKey"]["primaryKey"])) == 64
    assert doc["etag"].startswith('"')
    assert doc["etag"].endswith('"')
    assert doc["provisioningStatus"] == "enabled"


def test_registration_ids_are_case_insensitive(state: DpsState) -> None:
    state.put_enrollment("Dev-A", sym_enrollment("Dev-A"))
    assert state.get_enrollment("dev-a")["registrationId"] == "Dev-A"


@pytest.mark.parametrize("bad", ["-lead", "trail.", "has space", "x" * 129, "ünï"])
def test_invalid_registration_ids_are_rejected_with_400(state: DpsState, bad: str) -> None:
    with pytest.raises(ServiceError) as err:
        state.put_enrollment(bad, sym_enrollment(bad))
    assert err.value.status == 400


def test_stale_etag_fails_412_and_current_or_star_succeeds(state: DpsState) -> None:
    first = state.put_enrollment("dev-1", sym_enrollment("dev-1"))
    second = state.put_enrollment("dev-1", sym_enrollment("dev-1", "disabled"), first["etag"])
    with pytest.raises(ServiceError) as err:
        state.put_enrollment("dev-1", sym_enrollment("dev-1"), first["etag"])
    assert err.value.status == 412
    assert state.put_enrollment("dev-1", sym_enrollment("dev-1"), "*")["etag"] != second["etag"]
    with pytest.raises(ServiceError) as err:
        state.delete_enrollment("dev-1", first["etag"])
    assert err.value.status == 412


def test_certificate_info_matches_the_parsed_certificate() -> None:
    leaf = make_self_signed_leaf("device-x")
    info = certificate_info(leaf.cert)
    assert info["subjectName"] == "CN=device-x"
    assert info["sha1Thumbprint"] == thumbprint(leaf)
    assert info["version"] == 3


def test_x509_certificates_are_answered_as_info_only_and_survive_a_round_trip(state: DpsState) -> None:
    root = make_ca("root")
    created = state.put_group("grp", x509_group("grp", root.pem))
    primary = created["attestation"]["x509"]["signingCertificates"]["primary"]
    assert set(primary) == {"info"}
    created["provisioningStatus"] = "disabled"
    updated = state.put_group("grp", created, created["etag"])
    assert updated["attestation"]["x509"]["signingCertificates"]["primary"]["info"]["sha1Thumbprint"] == \
        thumbprint(root)
    stored = state.groups_raw()[0]["attestation"]["x509"]["signingCertificates"]["primary"]
    assert stored["certificate"] == root.pem


def test_deleting_a_group_keeps_its_registration_records(state: DpsState) -> None:
    state.put_group("grp", sym_group("grp"))
    state.record_registration("dev-1", "dev-1", "h:1", "grp")
    state.delete_group("grp")
    assert state.get_registration("dev-1")["assignedHub"] == "h:1"
    items, token = state.query("registrations", None, None, "grp")
    assert [i["registrationId"] for i in items] == ["dev-1"]
    assert token is None


def test_paging_returns_every_item_once_and_no_token_on_the_last_page(state: DpsState) -> None:
    state.seed_enrollments([sym_enrollment(f"dev-{i:03}") for i in range(25)])
    seen, token, pages = [], None, 0
    while True:
        items, token = state.query("enrollments", 10, token)
        seen += [i["registrationId"] for i in items]
        pages += 1
        if token is None:
            break
    assert pages == 3
    assert sorted(seen) == [f"dev-{i:03}" for i in range(25)]


def test_seeding_100k_registrations_is_fast_and_round_trips(state: DpsState) -> None:
    started = time.perf_counter()
    state.seed_registrations([{"registrationId": f"d{i}", "assignedHub": "h:1", "enrollmentGroupId": "g"}
                              for i in range(100_000)])
    assert time.perf_counter() - started < 5
    page, token = state.query("registrations", 100, None, "g")
    assert len(page) == 100
    assert token == "100"
    clone = DpsState.from_dict(state.to_dict())
    assert clone.counts()["registrations"] == 100_000


def test_bulk_reports_per_item_errors(state: DpsState) -> None:
    state.put_enrollment("dev-1", sym_enrollment("dev-1"))
    result = state.bulk("create", [sym_enrollment("dev-1"), sym_enrollment("dev-2")])
    assert result["isSuccessful"] is False
    assert [e["registrationId"] for e in result["errors"]] == ["dev-1"]
    assert result["errors"][0]["errorCode"] == 409201


def test_symmetric_group_device_registers_with_its_derived_key(service: DpsService, state: DpsState,
                                                                hubs: list[RecordingHub]) -> None:
    group = state.put_group("grp", sym_group("grp"))
    key = sas.derive_device_key(group["attestation"]["symmetricKey"]["primaryKey"], "dev-7")
    status, body = register(service, "dev-7", device_sas("dev-7", key))
    assert status == 200
    assert body["status"] == "assigned"
    hub = next(h for h in hubs if h.host_name == body["registrationState"]["assignedHub"])
    assert hub.devices["dev-7"]["symmetricKey"]["primaryKey"] == key
    assert state.get_registration("dev-7")["deviceId"] == "dev-7"


def test_disabled_individual_enrollment_blocks_a_symmetric_group_member(service: DpsService,
                                                                          state: DpsState) -> None:
    group = state.put_group("grp", sym_group("grp"))
    key = sas.derive_device_key(group["attestation"]["symmetricKey"]["primaryKey"], "dev-7")
    state.put_enrollment("dev-7", sym_enrollment("dev-7", "disabled"))
    status, _ = register(service, "dev-7", device_sas("dev-7", key))
    assert status == 401
    state.delete_enrollment("dev-7")
    status, body = register(service, "dev-7", device_sas("dev-7", key))
    assert status == 200
    assert body["status"] == "assigned"


def test_nearest_group_in_the_chain_decides(service: DpsService, state: DpsState) -> None:
    root = make_ca("root")
    inter = make_intermediate("inter-b", root)
    leaf = make_leaf("dev-9", inter)
    state.put_group("root-grp", x509_group("root-grp", root.pem))
    state.put_group("inter-grp", x509_group("inter-grp", inter.pem, "disabled"))
    status, body = register(service, "dev-9", {"x-emulator-client-cert": chain_header(leaf, inter)})
    assert (status, body["status"]) == (200, "disabled")
    state.delete_group("inter-grp")
    status, body = register(service, "dev-9", {"x-emulator-client-cert": chain_header(leaf, inter)})
    assert (status, body["status"]) == (200, "assigned")
    assert body["registrationState"]["x509"] == {"enrollmentGroupId": "root-grp"}


def test_chain_with_a_forged_signature_is_refused(service: DpsService, state: DpsState) -> None:
    root = make_ca("fleet-root")
    impostor = make_ca("fleet-root")  # same name, different key
    leaf = make_leaf("dev-3", impostor)
    state.put_group("root-grp", x509_group("root-grp", root.pem))
    assert PresentedChain.from_pems([leaf.pem]).depth_of(root.cert) is None
    status, _ = register(service, "dev-3", {"x-emulator-client-cert": chain_header(leaf)})
    assert status == 401
