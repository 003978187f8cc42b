"""Emulated Azure IoT Hub Device Provisioning Service (service API + device registration).

``DpsService`` is what ``emulator.server`` mounts on the DPS port; ``DpsState`` holds the data and offers fast
seeding and ``to_dict``/``from_dict`` for persistence. See docs/emulator-dps.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from emulator import sas
from emulator.dps import errors
from emulator.dps.device import DeviceEndpoint, HubLike
from emulator.dps.routes import build_router
from emulator.dps.state import DpsState
from emulator.http import Request, ServiceError

__all__ = ["DpsService", "DpsState", "HubLike"]

_SERVICE_ROOTS = ("enrollments", "enrollmentGroups", "registrations")


class DpsService:
    """One DPS instance: service API guarded by policy SAS, device API guarded per registration."""

    name = "dps"

    def __init__(self, state: DpsState, hubs: Sequence[HubLike], id_scope: str,
                 policy_keys: Mapping[str, str], *, retry_after: float = 1.0) -> None:
        self.state = state
        self.hubs = hubs
        self.id_scope = id_scope
        self.policy_keys = dict(policy_keys)
        self.device = DeviceEndpoint(state, hubs, id_scope, retry_after=retry_after)
        self.router = build_router(state, self.device)

    def authorize(self, request: Request) -> None:
        """Service API: a SAS token signed with a known policy key, scoped to the Host the client dialled.

        Device routes (``/{idScope}/registrations/...``) authenticate inside the handler, per enrollment.
        """
        first = request.path.lstrip("/").split("/", 1)[0]
        if first not in _SERVICE_ROOTS:
            return
        resource = request.headers.get("host", "")
        try:
            sas.verify(request.headers.get("authorization"), resource=resource,
                       keys_for=sas.policy_keys(self.policy_keys))
        except sas.SasError as exc:
            raise errors.unauthorized("Unauthorized: the shared access signature is not valid.") from exc

    def error_body(self, err: ServiceError) -> Any:
        return errors.error_body(err)
