"""IoT Hub identity shapes: ID rules, authentication normalisation, etags, Device/Twin wire views.

Kept apart from the store so the rules (what a valid device looks like on the wire) read in one place.
Wire names follow the 2021-04-12 data-plane swagger (docs/azure-behaviour.md §4.3).
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulator.http import ServiceError

NEVER = "0001-01-01T00:00:00Z"
_DEVICE_ID = re.compile(r"^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$")
AUTH_TYPES = ("sas", "selfSigned", "certificateAuthority", "none")


def hub_error(status: int, name: str, message: str) -> ServiceError:
    """A ServiceError carrying the hub's error name, also sent as the ``iothub-errorcode`` header."""
    return ServiceError(status, name, message, headers={"iothub-errorcode": name})


def now_iso() -> str:
    """UTC timestamp in the service's ISO form (seven fractional digits are not reproduced)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate_device_id(device_id: str) -> str:
    """Apply the 2021+ device ID rule (case-sensitive; ``+`` and ``#`` refused); 400 ArgumentInvalid."""
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise hub_error(400, "ArgumentInvalid", f"Device ID '{device_id!s:.140}' is invalid.")
    return device_id


def device_etag(counter: int) -> str:
    """Device etags look like base64 counters: ``MA==`` for 0, ``MQ==`` for 1
    (docs/azure-behaviour.md §4.3)."""
    return base64.b64encode(str(counter).encode()).decode()


def twin_etag(counter: int) -> str:
    """Twin etags look like ``AAAAAAAAAAc=``: base64 of an 8-byte big-endian counter."""
    return base64.b64encode(counter.to_bytes(8, "big")).decode()


def new_key() -> str:
    """A fresh 32-byte base64 symmetric key, as the service generates when keys are omitted."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def normalise_auth(auth: Any) -> dict[str, Any]:
    """Return a complete authentication block; generate SAS keys when absent (swagger: default is SAS).

    Not pinned by a documented source: a ``sas`` block with only one key gets the other generated.
    """
    if not auth:
        auth = {"type": "sas"}
    if not isinstance(auth, dict):
        raise hub_error(400, "ArgumentInvalid", "authentication must be an object.")
    kind = auth.get("type") or "sas"
    if kind not in AUTH_TYPES:
        raise hub_error(400, "ArgumentInvalid", f"Unknown authentication type '{kind!s:.40}'.")
    sym = auth.get("symmetricKey") or {}
    thumbs = auth.get("x509Thumbprint") or {}
    if kind == "sas":
        sym = {name: sym.get(name) or new_key() for name in ("primaryKey", "secondaryKey")}
        thumbs = {"primaryThumbprint": None, "secondaryThumbprint": None}
    elif kind == "selfSigned":
        if not thumbs.get("primaryThumbprint"):
            raise hub_error(400, "ArgumentInvalid", "selfSigned authentication needs primaryThumbprint.")
        thumbs = {k: (thumbs.get(k) or None) for k in ("primaryThumbprint", "secondaryThumbprint")}
        thumbs = {k: v.upper() if isinstance(v, str) else v for k, v in thumbs.items()}
        sym = {"primaryKey": None, "secondaryKey": None}
    else:
        sym = {"primaryKey": None, "secondaryKey": None}
        thumbs = {"primaryThumbprint": None, "secondaryThumbprint": None}
    return {"symmetricKey": sym, "x509Thumbprint": thumbs, "type": kind}


@dataclass
class Identity:
    """One device identity plus its twin. Mutable on purpose: only HubState touches it, under its lock."""

    device_id: str
    generation_id: str
    status: str
    status_reason: str | None
    auth: dict[str, Any]
    capabilities: dict[str, Any]
    device_scope: str | None
    parent_scopes: list[str]
    etag_counter: int = 0
    status_updated: str = NEVER
    created: str = field(default_factory=now_iso)
    last_activity: str = NEVER
    connection_state: str = "Disconnected"
    c2d_count: int = 0
    tags: dict[str, Any] = field(default_factory=dict)
    desired: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    twin_version: int = 1
    desired_version: int = 1
    reported_version: int = 1

    @property
    def etag(self) -> str:
        return device_etag(self.etag_counter)

    @property
    def twin_etag(self) -> str:
        return twin_etag(self.twin_version)

    def device_view(self) -> dict[str, Any]:
        """The Device JSON the registry returns (etag unquoted)."""
        return {
            "deviceId": self.device_id,
            "generationId": self.generation_id,
            "etag": self.etag,
            "connectionState": self.connection_state,
            "status": self.status,
            "statusReason": self.status_reason,
            "connectionStateUpdatedTime": NEVER,
            "statusUpdatedTime": self.status_updated,
            "lastActivityTime": self.last_activity,
            "cloudToDeviceMessageCount": self.c2d_count,
            "authentication": copy.deepcopy(self.auth),
            "capabilities": copy.deepcopy(self.capabilities),
            "deviceScope": self.device_scope,
            "parentScopes": list(self.parent_scopes),
        }

    def twin_view(self) -> dict[str, Any]:
        """The Twin JSON for twin reads and queries."""
        return {
            "deviceId": self.device_id,
            "etag": self.twin_etag,
            "deviceEtag": self.etag,
            "status": self.status,
            "statusReason": self.status_reason,
            "statusUpdateTime": self.status_updated,
            "connectionState": self.connection_state,
            "lastActivityTime": self.last_activity,
            "cloudToDeviceMessageCount": self.c2d_count,
            "authenticationType": self.auth.get("type"),
            "x509Thumbprint": copy.deepcopy(self.auth.get("x509Thumbprint")),
            "version": self.twin_version,
            "tags": copy.deepcopy(self.tags),
            "properties": {
                "desired": {**copy.deepcopy(self.desired), "$version": self.desired_version},
                "reported": {**copy.deepcopy(self.reported), "$version": self.reported_version},
            },
            "capabilities": copy.deepcopy(self.capabilities),
            "deviceScope": self.device_scope,
            "parentScopes": list(self.parent_scopes),
        }

    def apply_device(self, body: dict[str, Any]) -> None:
        """Replace the mutable identity fields from a Device/ExportImportDevice body (full replace)."""
        status = body.get("status") or "enabled"
        if status not in ("enabled", "disabled"):
            raise hub_error(400, "ArgumentInvalid", "status must be 'enabled' or 'disabled'.")
        if status != self.status:
            self.status_updated = now_iso()
        self.status = status
        self.status_reason = body.get("statusReason")
        self.auth = normalise_auth(body.get("authentication"))
        caps = body.get("capabilities") or {}
        self.capabilities = {"iotEdge": bool(caps.get("iotEdge", False))}
        self.device_scope = body.get("deviceScope")
        self.parent_scopes = list(body.get("parentScopes") or [])

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        return cls(**copy.deepcopy(data))


def new_identity(device_id: str, body: dict[str, Any]) -> Identity:
    """Create an identity from a request body (keys generated when omitted)."""
    ident = Identity(
        device_id=device_id,
        generation_id=str(secrets.randbelow(10**18)).zfill(18),
        status="enabled",
        status_reason=None,
        auth={},
        capabilities={"iotEdge": False},
        device_scope=None,
        parent_scopes=[],
    )
    ident.apply_device(body)
    ident.status_updated = NEVER if ident.status == "enabled" else now_iso()
    return ident
