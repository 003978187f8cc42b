"""Device registration against the emulated DPS: who may (re)provision (docs/azure-behaviour.md §1.1/§1.2
outcome table).

Enrollments are managed with the real provisioningserviceclient; the device side is plain HTTPS (the
emulator's documented stand-ins: ``x-emulator-client-cert`` for X.509 chains, ``x-emulator-tpm-ek`` for TPM).
Hub identities are checked with the real azure-iot-hub registry manager. "Refused" is either HTTP 401 (no
entry / credentials do not verify against the deciding entry) or status ``disabled`` (device authenticated
against a disabled entry); "assigned" is HTTP 200 with status ``assigned``.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from azure.iot.hub import IoTHubRegistryManager
from msrest.exceptions import HttpOperationError
from provisioningserviceclient import ProvisioningServiceClient
from provisioningserviceclient.models import AttestationMechanism, EnrollmentGroup, IndividualEnrollment

from emulator import sas
from tests.conformance.certs_helper import (
    IssuedCert,
    chain_header,
    device_sas,
    make_ca,
    make_intermediate,
    make_leaf,
    make_self_signed_leaf,
    register_device,
    thumbprint,
)


@pytest.fixture
def psc(clean_emulator: Any) -> ProvisioningServiceClient:
    return ProvisioningServiceClient.create_from_connection_string(clean_emulator.dps_connection_string)


def outcome(response: requests.Response) -> str:
    """'assigned', 'disabled' or 'unauthorized' — the three answers a device can tell apart."""
    if response.status_code == 401:
        return "unauthorized"
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == body["registrationState"]["status"]
    return str(body["status"])


def x509_device(emu: Any, leaf: IssuedCert, *chain: IssuedCert) -> requests.Response:
    return register_device(emu, leaf.cn, {"x-emulator-client-cert": chain_header(leaf, *chain)})


def group_x509(psc: ProvisioningServiceClient, group_id: str, signer: IssuedCert,
               status: str = "enabled") -> None:
    attestation = AttestationMechanism.create_with_x509_signing_certs(signer.pem)
    psc.create_or_update(EnrollmentGroup.create(group_id, attestation, provisioning_status=status))


def group_sym(psc: ProvisioningServiceClient, group_id: str) -> str:
    group = psc.create_or_update(EnrollmentGroup.create(group_id, AttestationMechanism(type="symmetricKey")))
    return str(group.attestation.symmetric_key.primary_key)


def individual_sym(psc: ProvisioningServiceClient, reg_id: str, status: str = "enabled", **extra: Any) -> str:
    made = psc.create_or_update(IndividualEnrollment.create(
        reg_id, AttestationMechanism(type="symmetricKey"), provisioning_status=status, **extra))
    return str(made.attestation.symmetric_key.primary_key)


def sym_device(emu: Any, reg_id: str, key: str) -> requests.Response:
    return register_device(emu, reg_id, device_sas(emu, reg_id, key))


def hub_device(emu: Any, host: str, device_id: str) -> Any:
    hub = next(h for h in emu.hubs if h["hostName"] == host)
    return IoTHubRegistryManager.from_connection_string(hub["connectionString"]).get_device(device_id)


def test_symmetric_individual_enrollment_assigns_and_creates_the_hub_identity(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    key = individual_sym(psc, "sym-dev-1")
    response = register_device(clean_emulator, "sym-dev-1", device_sas(clean_emulator, "sym-dev-1", key))
    assert outcome(response) == "assigned"
    state = response.json()["registrationState"]
    assert state["deviceId"] == "sym-dev-1"
    record = psc.get_registration_state("sym-dev-1")
    assert record.assigned_hub == state["assignedHub"]
    assert record.status == "assigned"
    device = hub_device(clean_emulator, state["assignedHub"], "sym-dev-1")
    assert device.status == "enabled"
    assert device.authentication.type == "sas"
    assert device.authentication.symmetric_key.primary_key == key


def test_enrollment_device_id_names_the_hub_identity_and_hub_choice_is_stable(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    key = individual_sym(psc, "sym-dev-2", device_id="Hub-Name-2")
    first = register_device(clean_emulator, "sym-dev-2", device_sas(clean_emulator, "sym-dev-2", key)).json()
    again = register_device(clean_emulator, "sym-dev-2", device_sas(clean_emulator, "sym-dev-2", key)).json()
    assert first["registrationState"]["assignedHub"] == again["registrationState"]["assignedHub"]
    assert hub_device(clean_emulator, first["registrationState"]["assignedHub"], "Hub-Name-2").device_id == \
        "Hub-Name-2"


def test_disabled_individual_enrollment_reports_disabled_and_creates_no_identity(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    key = individual_sym(psc, "sym-off", status="disabled")
    response = register_device(clean_emulator, "sym-off", device_sas(clean_emulator, "sym-off", key))
    assert outcome(response) == "disabled"
    for hub in clean_emulator.hubs:
        with pytest.raises(HttpOperationError) as err:
            hub_device(clean_emulator, hub["hostName"], "sym-off")
        assert err.value.response.status_code == 404


def test_unknown_device_and_wrong_key_are_unauthorized(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    individual_sym(psc, "sym-known")
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    assert outcome(sym_device(clean_emulator, "nobody", wrong)) == "unauthorized"
    assert outcome(sym_device(clean_emulator, "sym-known", wrong)) == "unauthorized"


def test_symmetric_group_member_registers_with_its_derived_key(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    group_key = group_sym(psc, "sym-group")
    device_key = sas.derive_device_key(group_key, "member-1")
    response = register_device(clean_emulator, "member-1", device_sas(clean_emulator, "member-1", device_key))
    assert outcome(response) == "assigned"
    assert response.json()["registrationState"]["symmetricKey"] == {"enrollmentGroupId": "sym-group"}
    assert outcome(register_device(clean_emulator, "member-1",
                                   device_sas(clean_emulator, "member-1", group_key))) == "unauthorized"


def test_disabled_individual_enrollment_blocks_a_symmetric_group_member_until_deleted(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    device_key = sas.derive_device_key(group_sym(psc, "sym-group"), "member-2")
    individual_sym(psc, "member-2", status="disabled")
    headers = device_sas(clean_emulator, "member-2", device_key)
    assert outcome(register_device(clean_emulator, "member-2", headers)) == "unauthorized"
    psc.delete_individual_enrollment_by_param("member-2")
    assert outcome(register_device(clean_emulator, "member-2", headers)) == "assigned"


def test_x509_group_member_registers_with_a_ca_identity(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    root = make_ca("fleet-root")
    inter = make_intermediate("fleet-inter", root)
    leaf = make_leaf("x509-dev-1", inter)
    group_x509(psc, "root-group", root)
    response = x509_device(clean_emulator, leaf, inter)
    assert outcome(response) == "assigned"
    state = response.json()["registrationState"]
    assert state["x509"] == {"enrollmentGroupId": "root-group"}
    device = hub_device(clean_emulator, state["assignedHub"], "x509-dev-1")
    assert device.authentication.type == "certificateAuthority"


def test_disabled_x509_individual_enrollment_blocks_a_group_member_and_delete_lets_it_back(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    root = make_ca("fleet-root")
    leaf = make_leaf("x509-dev-2", root)
    group_x509(psc, "root-group", root)
    attestation = AttestationMechanism.create_with_x509_client_certs(leaf.pem)
    blocker = IndividualEnrollment.create("x509-dev-2", attestation, provisioning_status="disabled")
    psc.create_or_update(blocker)
    assert outcome(x509_device(clean_emulator, leaf)) == "disabled"
    psc.delete_individual_enrollment_by_param("x509-dev-2")
    assert outcome(x509_device(clean_emulator, leaf)) == "assigned"


def test_disabled_symmetric_enrollment_blocks_an_x509_group_member_without_its_certificate(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    root = make_ca("fleet-root")
    leaf = make_leaf("x509-dev-3", root)
    group_x509(psc, "root-group", root)
    individual_sym(psc, "x509-dev-3", status="disabled")  # the recipe when no leaf certificate is at hand
    assert outcome(x509_device(clean_emulator, leaf)) == "unauthorized"


def test_nearest_group_in_the_chain_decides(clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    root = make_ca("fleet-root")
    inter = make_intermediate("fleet-inter", root)
    leaf = make_leaf("x509-dev-4", inter)
    group_x509(psc, "root-group", root)
    group_x509(psc, "inter-group", inter)
    response = x509_device(clean_emulator, leaf, inter)
    assert outcome(response) == "assigned"
    assert response.json()["registrationState"]["x509"] == {"enrollmentGroupId": "inter-group"}
    found = psc._runtime_client.query_device_registration_states("inter-group", raw=True).output
    assert [r.registration_id for r in found] == ["x509-dev-4"]


def test_disabled_intermediate_group_refuses_despite_an_enabled_root_group(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    root = make_ca("fleet-root")
    inter = make_intermediate("fleet-inter", root)
    other_inter = make_intermediate("fleet-inter-2", root)
    blocked, sibling = make_leaf("x509-dev-5", inter), make_leaf("x509-dev-6", other_inter)
    group_x509(psc, "root-group", root)
    group_x509(psc, "inter-group", inter, status="disabled")
    assert outcome(x509_device(clean_emulator, blocked, inter)) == "disabled"
    assert outcome(x509_device(clean_emulator, sibling, other_inter)) == "assigned"
    psc.delete_enrollment_group_by_param("inter-group")
    assert outcome(x509_device(clean_emulator, blocked, inter)) == "assigned"


def test_x509_chain_not_vouched_for_or_with_another_cn_is_unauthorized(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    root, stranger = make_ca("fleet-root"), make_ca("stranger-root")
    group_x509(psc, "root-group", root)
    assert outcome(x509_device(clean_emulator, make_leaf("x509-dev-7", stranger))) == "unauthorized"
    leaf = make_leaf("x509-dev-8", root)
    response = register_device(clean_emulator, "someone-else", {"x-emulator-client-cert": chain_header(leaf)})
    assert outcome(response) == "unauthorized"


def test_self_signed_individual_enrollment_creates_a_thumbprint_identity(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    leaf = make_self_signed_leaf("x509-self-1")
    psc.create_or_update(IndividualEnrollment.create(
        "x509-self-1", AttestationMechanism.create_with_x509_client_certs(leaf.pem)))
    response = x509_device(clean_emulator, leaf)
    assert outcome(response) == "assigned"
    device = hub_device(clean_emulator, response.json()["registrationState"]["assignedHub"], "x509-self-1")
    assert device.authentication.type == "selfSigned"
    assert device.authentication.x509_thumbprint.primary_thumbprint == thumbprint(leaf)


def test_tpm_enrollment_accepts_the_documented_endorsement_key_stand_in(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    attestation = AttestationMechanism.create_with_tpm("AToAAQ-ek")
    psc.create_or_update(IndividualEnrollment.create("tpm-dev-1", attestation))
    wrong = register_device(clean_emulator, "tpm-dev-1", {"x-emulator-tpm-ek": "other"})
    assert outcome(wrong) == "unauthorized"
    right = register_device(clean_emulator, "tpm-dev-1", {"x-emulator-tpm-ek": "AToAAQ-ek"})
    assert outcome(right) == "assigned"


def test_operation_polling_returns_the_final_status(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    key = individual_sym(psc, "poll-dev")
    body = register_device(clean_emulator, "poll-dev", device_sas(clean_emulator, "poll-dev", key)).json()
    dps = clean_emulator.config["dps"]
    url = f"{dps['deviceEndpoint']}/{dps['idScope']}/registrations/poll-dev/operations/{body['operationId']}"
    polled = requests.get(url, params={"api-version": "2021-06-01"}, verify=clean_emulator.config["caBundle"],
                          timeout=10)
    assert polled.status_code == 200
    assert polled.json() == body


def test_disabling_the_enrollment_leaves_the_hub_identity_enabled(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    key = individual_sym(psc, "kept-dev")
    hub = register_device(clean_emulator, "kept-dev", device_sas(clean_emulator, "kept-dev", key)).json()[
        "registrationState"]["assignedHub"]
    enrollment = psc.get_individual_enrollment("kept-dev")
    enrollment.provisioning_status = "disabled"
    psc.create_or_update(enrollment)
    assert outcome(register_device(clean_emulator, "kept-dev",
                                   device_sas(clean_emulator, "kept-dev", key))) == "disabled"
    assert hub_device(clean_emulator, hub, "kept-dev").status == "enabled"
    assert psc.get_registration_state("kept-dev").assigned_hub == hub


def hub_index(emu: Any, host: str) -> int:
    return next(i for i, h in enumerate(emu.hubs) if h["hostName"] == host)


def test_provisioned_devices_can_talk_to_their_assigned_hub(
        clean_emulator: Any, psc: ProvisioningServiceClient) -> None:
    device_key = sas.derive_device_key(group_sym(psc, "sym-group"), "talker-1")
    state = sym_device(clean_emulator, "talker-1", device_key).json()["registrationState"]
    index = hub_index(clean_emulator, state["assignedHub"])
    assert clean_emulator.send_telemetry("talker-1", index=index, key=device_key).status_code == 204
    root = make_ca("fleet-root")
    leaf = make_leaf("talker-2", root)
    group_x509(psc, "root-group", root)
    state = x509_device(clean_emulator, leaf).json()["registrationState"]
    sent = clean_emulator.send_telemetry("talker-2", index=hub_index(clean_emulator, state["assignedHub"]),
                                         cert_chain_pem=leaf.pem)
    assert sent.status_code == 204
