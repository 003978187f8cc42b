"""SAS authorisation of the service APIs (docs/azure-behaviour.md §5) and the admin API's loopback rule.

Wrong keys, expired tokens, unknown policies and out-of-scope resources are refused with 401 and the
service's own error body; the unmodified SDKs surface that as their usual exceptions.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from azure.iot.hub import IoTHubRegistryManager
from msrest.exceptions import HttpOperationError
from provisioningserviceclient import ProvisioningServiceClient, ProvisioningServiceError

from emulator import sas
from emulator.iothub.model import new_key


def with_key(connection_string: str, key: str) -> str:
    head, _, _ = connection_string.rpartition("SharedAccessKey=")
    return f"{head}SharedAccessKey={key}"


def hub_get(emu: Any, token: str | None) -> requests.Response:
    host = emu.hubs[0]["hostName"]
    headers = {"Authorization": token} if token else {}
    return requests.get(f"https://{host}/devices", params={"api-version": "2021-04-12"}, headers=headers,
                        verify=emu.ca_bundle, timeout=10)


def owner_key(emu: Any) -> str:
    return emu.hubs[0]["connectionString"].rpartition("SharedAccessKey=")[2]


def test_hub_sdk_with_wrong_key_gets_401_unauthorized(clean_emulator: Any) -> None:
    rm = IoTHubRegistryManager.from_connection_string(with_key(clean_emulator.hubs[0]["connectionString"],
                                                               new_key()))
    with pytest.raises(HttpOperationError) as exc:
        rm.get_devices()
    assert exc.value.response.status_code == 401
    assert exc.value.response.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"
    assert exc.value.response.json()["Message"].startswith("ErrorCode:IotHubUnauthorizedAccess;")


def test_dps_sdk_with_wrong_key_gets_401(clean_emulator: Any) -> None:
    psc = ProvisioningServiceClient.create_from_connection_string(
        with_key(clean_emulator.dps_connection_string, new_key()))
    with pytest.raises(ProvisioningServiceError) as exc:
        psc.get_individual_enrollment("whoever")
    assert exc.value.cause.response.status_code == 401


def test_valid_token_is_accepted(clean_emulator: Any) -> None:
    host = clean_emulator.hubs[0]["hostName"]
    assert hub_get(clean_emulator, sas.make_token(host, owner_key(clean_emulator), policy="iothubowner")) \
        .status_code == 200


BAD = ["expired", "unknown-policy", "no-policy", "other-host", "missing", "garbage"]


@pytest.mark.parametrize("case", BAD)
def test_bad_tokens_are_401(clean_emulator: Any, case: str) -> None:
    host, key = clean_emulator.hubs[0]["hostName"], owner_key(clean_emulator)
    tokens = {
        "expired": sas.make_token(host, key, policy="iothubowner", expiry=int(time.time()) - 1),
        "unknown-policy": sas.make_token(host, key, policy="registryRead"),
        "no-policy": sas.make_token(host, key),
        "other-host": sas.make_token(clean_emulator.hubs[1]["hostName"], key, policy="iothubowner"),
        "missing": None,
        "garbage": "SharedAccessSignature nonsense",
    }
    response = hub_get(clean_emulator, tokens[case])
    assert response.status_code == 401
    assert response.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"


def test_other_hubs_key_is_refused(clean_emulator: Any) -> None:
    host = clean_emulator.hubs[0]["hostName"]
    other_key = clean_emulator.hubs[1]["connectionString"].rpartition("SharedAccessKey=")[2]
    assert hub_get(clean_emulator, sas.make_token(host, other_key, policy="iothubowner")).status_code == 401


def test_sas_verify_matches_sdk_signing_rules() -> None:
    key = new_key()
    token = sas.make_token("127.0.0.1:8443/dps", key, policy="provisioningserviceowner")
    assert "sr=127.0.0.1%3A8443%2Fdps" in token
    keys = sas.policy_keys({"provisioningserviceowner": key})
    parsed = sas.verify(token, resource="127.0.0.1:8443/dps/enrollments/x", keys_for=keys)
    assert parsed.skn == "provisioningserviceowner"
    with pytest.raises(sas.SasError):
        sas.verify(token, resource="127.0.0.1:8443/hub", keys_for=keys)


def test_admin_api_needs_no_token_from_loopback(clean_emulator: Any) -> None:
    response = requests.get(clean_emulator.config["admin"] + "/counters", verify=clean_emulator.ca_bundle,
                            timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "calls" in response.json()


def test_admin_rejects_unknown_settings_with_400(clean_emulator: Any) -> None:
    response = requests.put(clean_emulator.config["admin"] + "/latency", json={"bogus": 1},
                            verify=clean_emulator.ca_bundle, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
