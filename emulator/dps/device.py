"""Device-facing DPS endpoint: ``PUT /{idScope}/registrations/{registrationId}/register``, operation
polling and the device's registration-status lookup.

Flow as DPS runs it: a device that authenticates gets **202** ``{"operationId", "status": "assigning"}``
with ``Retry-After`` (seconds); ``GET …/operations/{operationId}`` then answers 200 with the final state:
``assigned`` (with ``registrationState``) or ``disabled`` (the deciding enrollment or group is disabled;
the status Microsoft documents for a device blocked by a disabled enrollment, and one of the
``RegistrationOperationStatus`` values of the device API). ``assigningPolls`` (knob, default 0) makes the
first N polls answer 202 ``assigning`` again. A device that does not authenticate gets 401 at once. The
emulator decides when the PUT arrives; polling is not re-authenticated (the operation ID is an
unguessable UUID). A refused registration leaves existing registration records untouched.

Hub choice: static allocation → the enrollment's ``iotHubHostName`` (or first of ``iotHubs``); otherwise a
stable SHA-256 hash of the lower-cased registration ID over the enrollment's ``iotHubs`` (all linked hubs
when empty). Host names that are not linked hubs are ignored (real DPS rejects them when the enrollment is
saved — not reproduced). With ``reprovisionPolicy.updateHubAssignment == false`` a re-registering device
keeps its hub.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from emulator.dps import errors, matching, models
from emulator.dps.state import DpsState
from emulator.http import Request, Response


class HubLike(Protocol):
    """The part of ``emulator.iothub.state.HubState`` DPS needs."""

    host_name: str

    def provision_device(self, device_id: str, *, auth: dict[str, Any]) -> dict[str, Any]: ...


class DeviceEndpoint:
    """Device registration for one DPS instance and its linked hubs."""

    def __init__(self, state: DpsState, hubs: Sequence[HubLike], id_scope: str, *,
                 retry_after: float = 1.0, assigning_polls: int = 0) -> None:
        self.state = state
        self.hubs = hubs
        self.id_scope = id_scope
        self.retry_after = retry_after
        self.assigning_polls = assigning_polls

    def _retry_after(self) -> dict[str, str]:
        value = self.retry_after
        return {"Retry-After": str(int(value)) if float(value).is_integer() else str(value)}

    def _authenticate(self, request: Request, registration_id: str) -> matching.Decision:
        try:
            creds = matching.read_credentials(request.headers, request.client_cert_chain)
            return matching.decide(self.state, self.id_scope, registration_id, creds)
        except matching.UnauthenticatedError as exc:
            raise matching.unauthorized(exc) from exc

    def _check_scope(self, request: Request, id_scope: str) -> None:
        if id_scope.lower() != self.id_scope.lower():
            raise errors.not_found(errors.REGISTRATION_NOT_FOUND, "Unknown ID scope.")
        if not request.query.get("api-version"):
            raise errors.ServiceError(400, errors.API_VERSION_INVALID, "api-version is required.")

    def register(self, request: Request, id_scope: str, registration_id: str) -> Response:
        """Decide, assign, create the hub identity, record the registration."""
        self._check_scope(request, id_scope)
        models.validate_id(registration_id, "registrationId")
        body = request.json() or {}
        if not isinstance(body, dict) or str(body.get("registrationId", registration_id)).lower() != \
                registration_id.lower():
            raise errors.bad_request("registrationId in the body does not match the URL.")
        decision = self._authenticate(request, registration_id)
        operation_id = f"4.{uuid.uuid4().hex[:16]}.{uuid.uuid4()}"
        if decision.enabled:
            result = self._assign(registration_id, decision)
        else:
            result = {"registrationId": registration_id, "status": "disabled",
                      "errorMessage": "The enrollment is disabled."}
        final = {"operationId": operation_id, "status": result["status"], "registrationState": result}
        self.state.save_operation(operation_id, {**final, "_registrationId": registration_id.lower(),
                                                 "_pending": self.assigning_polls})
        return Response(202, {"operationId": operation_id, "status": "assigning"}, self._retry_after())

    def operation(self, request: Request, id_scope: str, registration_id: str, operation_id: str) -> Response:
        self._check_scope(request, id_scope)
        body = self.state.get_operation(operation_id)
        if body["_registrationId"] != registration_id.lower():
            raise errors.not_found(errors.OPERATION_NOT_FOUND, "Operation not found.")
        if body.get("_pending", 0) > 0:
            body["_pending"] -= 1
            return Response(202, {"operationId": operation_id, "status": "assigning"}, self._retry_after())
        return Response(200, {k: v for k, v in body.items() if not k.startswith("_")})

    def status_lookup(self, request: Request, id_scope: str, registration_id: str) -> Response:
        """``POST /{idScope}/registrations/{registrationId}``: the device reads its own registration state
        (same credentials as for registering); 404 when it never registered."""
        self._check_scope(request, id_scope)
        models.validate_id(registration_id, "registrationId")
        self._authenticate(request, registration_id)
        record = self.state.registration_raw(registration_id)
        if record is None:
            raise errors.not_found(errors.REGISTRATION_NOT_FOUND, "Registration not found.")
        return Response(200, dict(record))

    def _assign(self, registration_id: str, decision: matching.Decision) -> dict[str, Any]:
        hub = self._choose_hub(registration_id, decision.doc)
        device_id = registration_id if decision.group_id else decision.doc.get("deviceId") or registration_id
        hub.provision_device(device_id, auth=matching.hub_auth(decision))
        record = self.state.record_registration(registration_id, device_id, hub.host_name, decision.group_id)
        if decision.group_id:
            record[decision.attestation] = {"enrollmentGroupId": decision.group_id}
        return record

    def _choose_hub(self, registration_id: str, doc: dict[str, Any]) -> HubLike:
        if not self.hubs:
            raise errors.ServiceError(400, errors.BAD_REQUEST, "No IoT hub is linked to this DPS instance.")
        linked = {h.host_name.lower(): h for h in self.hubs}
        previous = self.state.registration_raw(registration_id)
        keep = (doc.get("reprovisionPolicy") or {}).get("updateHubAssignment") is False
        if keep and previous and previous["assignedHub"].lower() in linked:
            return linked[previous["assignedHub"].lower()]
        names = list(doc.get("iotHubs") or [])
        if doc.get("allocationPolicy") == "static" and doc.get("iotHubHostName"):
            names = [doc["iotHubHostName"]]
        candidates = [linked[n.lower()] for n in names if n.lower() in linked] or list(self.hubs)
        if doc.get("allocationPolicy") == "static":
            return candidates[0]
        digest = hashlib.sha256(registration_id.lower().encode()).digest()
        return candidates[int.from_bytes(digest[:8], "big") % len(candidates)]
