"""Device-to-cloud endpoint: 204 for an enabled device with valid credentials, 401 once it is disabled or
deleted — the observable outcome of revocation. Identities are managed through azure-iot-hub 2.7.0; the
device side is plain HTTPS (this project has no device SDK), as a device would send it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes

from emulator import sas
from tests.support.certs import make_ca, make_intermediate, make_leaf, make_self_signed_leaf


@pytest.fixture
def rm(clean_emulator: Any) -> Any:
    return clean_emulator.registry_manager(0)


def sha1(cert: Any) -> str:
    return cert.cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - thumbprints are SHA-1


def test_sas_device_is_accepted_then_refused_when_disabled_and_deleted(clean_emulator: Any, rm: Any) -> None:
    device = rm.create_device_with_sas("car-1", None, None, "enabled")
    key = device.authentication.symmetric_key.primary_key
    assert clean_emulator.send_telemetry("car-1", key=key).status_code == 204
    rm.update_device_with_sas("car-1", device.etag, key, device.authentication.symmetric_key.secondary_key,
                              "disabled")
    refused = clean_emulator.send_telemetry("car-1", key=key)
    assert refused.status_code == 401
    assert refused.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"
    rm.delete_device("car-1")
    assert clean_emulator.send_telemetry("car-1", key=key).status_code == 401


def test_secondary_key_works_and_wrong_key_is_refused(clean_emulator: Any, rm: Any) -> None:
    device = rm.create_device_with_sas("car-2", None, None, "enabled")
    assert clean_emulator.send_telemetry(
        "car-2", key=device.authentication.symmetric_key.secondary_key).status_code == 204
    other = rm.create_device_with_sas("car-3", None, None, "enabled")
    wrong = other.authentication.symmetric_key.primary_key
    assert clean_emulator.send_telemetry("car-2", key=wrong).status_code == 401


def test_expired_device_token_is_refused(clean_emulator: Any, rm: Any) -> None:
    device = rm.create_device_with_sas("car-4", None, None, "enabled")
    host = clean_emulator.hubs[0]["hostName"]
    token = sas.make_token(f"{host}/devices/car-4", device.authentication.symmetric_key.primary_key,
                           expiry=int(time.time()) - 10)
    response = requests.post(f"https://{host}/devices/car-4/messages/events", json={},
                             params={"api-version": "2020-09-30"}, headers={"Authorization": token},
                             verify=clean_emulator.ca_bundle, timeout=10)
    assert response.status_code == 401


def test_self_signed_device_matches_thumbprint(clean_emulator: Any, rm: Any) -> None:
    leaf = make_self_signed_leaf("cam-1")
    rm.create_device_with_x509("cam-1", sha1(leaf), None, "enabled")
    assert clean_emulator.send_telemetry("cam-1", cert_chain_pem=leaf.pem).status_code == 204
    stranger = make_self_signed_leaf("cam-1")
    assert clean_emulator.send_telemetry("cam-1", cert_chain_pem=stranger.pem).status_code == 401
    assert clean_emulator.send_telemetry("cam-1").status_code == 401


def test_ca_device_needs_matching_cn_and_valid_chain_and_enabled_status(clean_emulator: Any, rm: Any) -> None:
    root = make_ca("root")
    inter = make_intermediate("inter", root)
    leaf = make_leaf("meter-1", inter)
    device = rm.create_device_with_certificate_authority("meter-1", "enabled")
    assert clean_emulator.send_telemetry("meter-1", cert_chain_pem=leaf.chain_pem()).status_code == 204
    other = make_leaf("meter-2", inter)
    assert clean_emulator.send_telemetry("meter-1", cert_chain_pem=other.chain_pem()).status_code == 401
    forged = make_leaf("meter-1", make_intermediate("inter", make_ca("root")))
    broken_chain = forged.pem + inter.pem
    assert clean_emulator.send_telemetry("meter-1", cert_chain_pem=broken_chain).status_code == 401
    rm.update_device_with_certificate_authority("meter-1", device.etag, "disabled")
    assert clean_emulator.send_telemetry("meter-1", cert_chain_pem=leaf.chain_pem()).status_code == 401


def test_unknown_device_is_401(clean_emulator: Any) -> None:
    assert clean_emulator.send_telemetry("nobody", key="AAAA").status_code == 401
