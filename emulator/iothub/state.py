"""In-memory IoT Hub identity registry (one per emulated hub), thread-safe behind one lock.

Semantics follow docs/azure-behaviour.md §4.4. Choices not pinned by a documented source:
* PUT with any If-Match (including ``*``) on a missing device → 404 DeviceNotFound (as .NET's
  UpdateDeviceAsync maps it).
* ``provision_device`` (called by DPS on (re)registration) creates the identity or replaces its
  authentication; an existing identity keeps its status, so a DISABLED hub identity stays disabled after
  re-provisioning.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Collection, Iterable
from typing import Any

from emulator.iothub.model import Identity, hub_error, new_identity, validate_device_id

STAR = "*"


def strip_etag(value: str | None) -> str | None:
    """Normalise an If-Match value: quoted/unquoted etags and ``*``/``"*"`` reduce to their bare form."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


class HubState:
    """One hub's registry. ``host_name`` is what DPS reports as ``assignedHub`` (set once bound)."""

    def __init__(self, name: str, host_name: str = "", *, max_devices: int = 1_000_000) -> None:
        self.name = name
        self.host_name = host_name
        self.max_devices = max_devices
        self._lock = threading.RLock()
        self._devices: dict[str, Identity] = {}
        self.version = 0  # bumped on every mutation; persistence saves when it moves
        self.reset_hooks: list[Callable[[], None]] = []  # e.g. the hub's job list, cleared with the registry

    # ---- internal helpers (callers hold the lock)
    def _get(self, device_id: str) -> Identity:
        ident = self._devices.get(device_id)
        if ident is None:
            raise hub_error(404, "DeviceNotFound", f"Device {device_id} not found.")
        return ident

    @staticmethod
    def _check_etag(ident: Identity, if_match: str | None, *, twin: bool = False) -> None:
        wanted = strip_etag(if_match)
        if wanted in (None, "", STAR):
            return
        current = ident.twin_etag if twin else ident.etag
        if wanted != current:
            raise hub_error(412, "PreconditionFailed", "Precondition failed: the etag does not match.")

    def _touch(self, ident: Identity) -> None:
        ident.etag_counter += 1
        self.version += 1

    # ---- device CRUD
    def create_or_update(self, device_id: str, body: dict[str, Any], if_match: str | None) -> dict[str, Any]:
        """PUT /devices/{id}: create without If-Match (409 if it exists), update with If-Match (404/412)."""
        validate_device_id(device_id)
        if not isinstance(body, dict):
            raise hub_error(400, "ArgumentInvalid", "Request body must be a Device object.")
        if body.get("deviceId") not in (None, device_id):
            raise hub_error(400, "ArgumentInvalid", "deviceId in the body does not match the URL.")
        with self._lock:
            ident = self._devices.get(device_id)
            if if_match is None:
                if ident is not None:
                    raise hub_error(409, "DeviceAlreadyExists", f"Device '{device_id}' already exists.")
                return self._create(device_id, body).device_view()
            if ident is None:
                raise hub_error(404, "DeviceNotFound", f"Device {device_id} not found.")
            self._check_etag(ident, if_match)
            ident.apply_device(body)
            self._touch(ident)
            return ident.device_view()

    def _create(self, device_id: str, body: dict[str, Any]) -> Identity:
        if len(self._devices) >= self.max_devices:
            raise hub_error(403, "IotHubQuotaExceeded", "Total number of devices on the hub exceeded.")
        ident = new_identity(device_id, body)
        self._devices[device_id] = ident
        self.version += 1
        return ident

    def get_device(self, device_id: str) -> dict[str, Any]:
        with self._lock:
            return self._get(device_id).device_view()

    def delete_device(self, device_id: str, if_match: str | None) -> None:
        """DELETE /devices/{id}: 404 when missing, 412 on a stale etag; the twin goes with it."""
        with self._lock:
            ident = self._get(device_id)
            self._check_etag(ident, if_match)
            del self._devices[device_id]
            self.version += 1

    def list_devices(self, top: int | None) -> list[dict[str, Any]]:
        """GET /devices?top=n; values outside 1-1000 are treated as 1000 (swagger)."""
        limit = top if top is not None and 1 <= top <= 1000 else 1000
        with self._lock:
            return [ident.device_view() for ident in list(self._devices.values())[:limit]]

    def exists(self, device_id: str) -> bool:
        with self._lock:
            return device_id in self._devices

    # ---- provisioning hook (called by DPS)
    def provision_device(self, device_id: str, *, auth: dict[str, Any]) -> dict[str, Any]:
        """Create the identity, or replace the authentication of an existing one, keeping its status."""
        validate_device_id(device_id)
        with self._lock:
            ident = self._devices.get(device_id)
            if ident is None:
                return self._create(device_id, {"authentication": auth}).device_view()
            keep = {"status": ident.status, "statusReason": ident.status_reason,
                    "capabilities": ident.capabilities, "deviceScope": ident.device_scope,
                    "parentScopes": ident.parent_scopes, "authentication": auth}
            ident.apply_device(keep)
            self._touch(ident)
            return ident.device_view()

    def identity(self, device_id: str) -> Identity | None:
        """A deep copy of one identity (for device-side authentication), or None."""
        with self._lock:
            ident = self._devices.get(device_id)
            return copy.deepcopy(ident) if ident else None

    def record_activity(self, device_id: str, when: str) -> None:
        """Remember the last device-to-cloud message time (not an etag change)."""
        with self._lock:
            ident = self._devices.get(device_id)
            if ident is not None:
                ident.last_activity = when

    # ---- twins
    def get_twin(self, device_id: str) -> dict[str, Any]:
        with self._lock:
            return self._get(device_id).twin_view()

    def update_twin(
        self, device_id: str, body: dict[str, Any], if_match: str | None, *, replace: bool
    ) -> Any:
        """PUT replaces tags and desired properties; PATCH merges them (null deletes a key)."""
        if not isinstance(body, dict):
            raise hub_error(400, "ArgumentInvalid", "Request body must be a Twin object.")
        with self._lock:
            ident = self._get(device_id)
            self._check_etag(ident, if_match, twin=True)
            self._apply_twin(ident, body, replace=replace)
            return ident.twin_view()

    def _apply_twin(self, ident: Identity, body: dict[str, Any], *, replace: bool) -> None:
        tags = body.get("tags")
        desired = {k: v for k, v in ((body.get("properties") or {}).get("desired") or {}).items()
                   if not k.startswith("$")}
        if replace:
            ident.tags = copy.deepcopy(tags or {})
            ident.desired = copy.deepcopy(desired)
        else:
            if tags is not None:
                _merge(ident.tags, tags)
            _merge(ident.desired, desired)
        if desired or replace:
            ident.desired_version += 1
        ident.twin_version += 1
        self.version += 1

    # ---- queries / statistics / bulk support
    def twins(self) -> list[dict[str, Any]]:
        """Every twin in insertion order (the query engine filters and pages them)."""
        with self._lock:
            return [ident.twin_view() for ident in self._devices.values()]

    def twins_by_id(self, device_ids: Collection[str]) -> list[dict[str, Any]]:
        """The twins of the given IDs that exist, in insertion order (what a scan would return), built only
        for those IDs: a dict lookup each, plus one pass over the ID list (no twin built) to order several."""
        with self._lock:
            found = [device_id for device_id in device_ids if device_id in self._devices]
            if len(found) > 1:
                wanted = set(found)
                found = [device_id for device_id in self._devices if device_id in wanted]
            return [self._devices[device_id].twin_view() for device_id in found]

    def statistics(self) -> dict[str, int]:
        with self._lock:
            enabled = sum(1 for ident in self._devices.values() if ident.status == "enabled")
            total = len(self._devices)
        disabled = total - enabled
        return {"totalDeviceCount": total, "enabledDeviceCount": enabled, "disabledDeviceCount": disabled}

    @property
    def lock(self) -> threading.RLock:
        """The registry lock, for bulk operations that need a consistent registry."""
        return self._lock

    def raw(self) -> dict[str, Identity]:
        """The live identity map; only for emulator.iothub.bulk, which holds ``lock`` while using it."""
        return self._devices

    def bump(self) -> None:
        self.version += 1

    # ---- seeding, reset, persistence
    def seed_devices(self, devices: Iterable[dict[str, Any]]) -> int:
        """Fast bulk insert (admin seeding): Device-shaped dicts, existing IDs replaced. Returns the count."""
        count = 0
        with self._lock:
            for body in devices:
                device_id = validate_device_id(body.get("deviceId") or body.get("id") or "")
                ident = new_identity(device_id, body)
                ident.tags = copy.deepcopy(body.get("tags") or {})
                self._devices[device_id] = ident
                count += 1
            self.version += 1
        return count

    def reset(self) -> None:
        # hooks first: a running import job is stopped before the registry empties, so none of its lines
        # lands in the fresh registry
        for hook in self.reset_hooks:
            hook()
        with self._lock:
            self._devices.clear()
            self.version += 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"name": self.name, "hostName": self.host_name,
                    "devices": [ident.to_dict() for ident in self._devices.values()]}

    def load_dict(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._devices = {d["device_id"]: Identity.from_dict(d) for d in data.get("devices", [])}
            self.version += 1


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge-patch for twin sections: nested objects merge, ``None`` removes the key."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
