"""The device registration flow as DPS runs it (202 + ``operationId`` + ``Retry-After``, then the
operation-status GET), mutual TLS for X.509 on DPS and hub device endpoints, and the project's Python device
client (``devhost.device_client``) following that flow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from devhost.device_client import DeviceClient, DeviceCredentials, DpsEndpoint
from emulator import sas
from tests.conformance.certs_helper import (
    device_sas,
    make_ca,
    make_intermediate,
    make_leaf,
    make_self_signed_leaf,
    register_device,
)
from tests.support.certs import IssuedCert

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def sym_enrollment(reg_id: str, status: str = "enabled") -> dict[str, Any]:
    return {"registrationId": reg_id, "provisioningStatus": status,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}}


def x509_group(group_id: str, signer: IssuedCert) -> dict[str, Any]:
    signing = {"signingCertificates": {"primary": {"certificate": signer.pem}}}
    return {"enrollmentGroupId": group_id, "attestation": {"type": "x509", "x509": signing}}


def x509_individual(leaf: IssuedCert) -> dict[str, Any]:
    certs = {"primary": {"certificate": leaf.pem}}
    return {"registrationId": leaf.cn, "attestation": {"type": "x509", "x509": {"clientCertificates": certs}}}


def files(tmp: Path, leaf: IssuedCert, *chain: IssuedCert) -> tuple[str, str]:
    cert, key = tmp / f"{leaf.cn}.pem", tmp / f"{leaf.cn}.key.pem"
    cert.write_text("".join(c.pem for c in (leaf, *chain)))
    key.write_text(leaf.key_pem)
    return str(cert), str(key)


def test_put_answers_202_assigning_with_retry_after_and_the_poll_gives_the_final_state(
        clean_emulator: Any) -> None:
    clean_emulator.admin("POST", "/seed", json={"enrollments": [sym_enrollment("flow-1")]})
    clean_emulator.admin("PUT", "/registration", json={"retryAfter": 0, "assigningPolls": 1})
    dps = clean_emulator.config["dps"]
    base = f"{dps['deviceEndpoint']}/{dps['idScope']}/registrations/flow-1"
    params = {"api-version": "2021-06-01"}
    headers = device_sas(clean_emulator, "flow-1", KEY)
    ca = clean_emulator.ca_bundle
    put = requests.put(f"{base}/register", params=params, json={"registrationId": "flow-1"}, headers=headers,
                       verify=ca, timeout=10)
    assert put.status_code == 202
    assert put.json()["status"] == "assigning"
    assert put.headers["Retry-After"] == "0"
    operation = put.json()["operationId"]
    poll = f"{base}/operations/{operation}"
    first = requests.get(poll, params=params, headers=headers, verify=ca, timeout=10)
    assert (first.status_code, first.json()["status"]) == (202, "assigning")
    final = requests.get(poll, params=params, headers=headers, verify=ca, timeout=10)
    assert final.status_code == 200
    assert final.json()["status"] == "assigned"
    assert final.json()["registrationState"]["deviceId"] == "flow-1"
    lookup = requests.post(base, params=params, json={"registrationId": "flow-1"}, headers=headers,
                           verify=ca, timeout=10)
    assert lookup.status_code == 200
    assert lookup.json()["assignedHub"] == final.json()["registrationState"]["assignedHub"]
    stranger = requests.post(base, params=params, json={"registrationId": "flow-1"}, verify=ca, timeout=10)
    assert stranger.status_code == 401


def test_unauthenticated_device_gets_401_at_once_and_a_disabled_one_learns_it_from_the_operation(
        clean_emulator: Any) -> None:
    clean_emulator.admin("POST", "/seed", json={"enrollments": [sym_enrollment("off-1", "disabled")]})
    other_key = sas.derive_device_key(KEY, "x")
    wrong = register_device(clean_emulator, "off-1", device_sas(clean_emulator, "off-1", other_key))
    assert wrong.status_code == 401
    assert wrong.json()["errorCode"] == 401002
    disabled = register_device(clean_emulator, "off-1", device_sas(clean_emulator, "off-1", KEY))
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "disabled"
    assert disabled.json()["registrationState"]["status"] == "disabled"


def test_x509_devices_authenticate_by_the_tls_handshake_alone(clean_emulator: Any, tmp_path: Path) -> None:
    root = make_ca("flow-root")
    inter = make_intermediate("flow-inter", root)
    member = make_leaf("tls-member", inter)
    single = make_self_signed_leaf("tls-single")
    clean_emulator.admin("POST", "/seed", json={"enrollments": [x509_group("tls-group", root),
                                                                x509_individual(single)]})
    for leaf, chain in ((member, (inter,)), (single, ())):
        cert = files(tmp_path, leaf, *chain)
        started = time.perf_counter()
        response = register_device(clean_emulator, leaf.cn, {}, cert=cert)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "assigned"
        assert elapsed < 5
        hub = response.json()["registrationState"]["assignedHub"]
        url = f"https://{hub}/devices/{leaf.cn}/messages/events"
        sent = requests.post(url, params={"api-version": "2020-09-30"}, json={}, cert=cert,
                             verify=clean_emulator.ca_bundle, timeout=10)
        assert sent.status_code == 204
        bare = requests.post(url, params={"api-version": "2020-09-30"}, json={},
                             verify=clean_emulator.ca_bundle, timeout=10)
        assert bare.status_code == 401
    stranger = make_self_signed_leaf("tls-member")  # same CN, not signed by the group's root
    elsewhere = tmp_path / "stranger"
    elsewhere.mkdir()
    refused = register_device(clean_emulator, "tls-member", {}, cert=files(elsewhere, stranger))
    assert refused.status_code == 401


def test_the_python_device_client_follows_the_flow_over_mutual_tls(
        clean_emulator: Any, tmp_path: Path) -> None:
    clean_emulator.admin("PUT", "/registration", json={"retryAfter": 0, "assigningPolls": 2})
    root = make_ca("client-root")
    leaf = make_leaf("client-cam", root)
    clean_emulator.admin("POST", "/seed", json={"enrollments": [x509_group("client-group", root),
                                                                sym_enrollment("client-off", "disabled")]})
    endpoint = DpsEndpoint.from_emulator_config(clean_emulator.config)
    cert, key = files(tmp_path, leaf)
    client = DeviceClient(endpoint, DeviceCredentials("client-cam", cert_chain_pem=leaf.pem, cert_file=cert,
                                                      key_file=key))
    registration = client.register()
    assert registration.assigned
    assert registration.assigned_hub is not None
    assert client.send_telemetry(registration.assigned_hub, "client-cam").accepted
    off = DeviceClient(endpoint, DeviceCredentials("client-off", symmetric_key=KEY)).register()
    assert off.status == "disabled"
    nobody = DeviceClient(endpoint, DeviceCredentials("nobody", symmetric_key=KEY)).register()
    assert nobody.status == "unauthorized"
