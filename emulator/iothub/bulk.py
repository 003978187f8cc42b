"""Bulk registry operations: ``POST /devices`` with up to 100 ExportImportDevice entries.

Import-mode semantics follow the bulk identity docs (H3): ``create`` fails on an existing ID;
``update``/``delete`` need an existing ID and ignore etags; ``…IfMatchETag`` compare ``eTag`` (device)
or ``twinETag`` (twin); ``updateTwin…`` overwrite tags and desired properties.

Choices not pinned by a documented source (docs/azure-behaviour.md §4.4, §11.7):
* Partial failure: entries are applied one by one in request order; successful entries stay committed,
  failed ones are listed in ``errors``; the answer is 400 when any entry failed, else 200.
* A device ID listed twice rejects the whole call before anything is applied: 400 whose body is a
  BulkRegistryOperationResult (so the SDK can parse it) that also carries the classic ``Message``.
* ``warnings`` is always empty (DeviceRegisteredWithoutTwin is not produced).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from emulator.http import Response, ServiceError
from emulator.iothub.model import Identity, hub_error, new_identity, validate_device_id
from emulator.iothub.state import STAR, HubState, strip_etag

MAX_DEVICES = 100
MODES = ("create", "update", "updateifmatchetag", "delete", "deleteifmatchetag", "updatetwin",
         "updatetwinifmatchetag")


class EntryError(Exception):
    def __init__(self, code: str, status: str) -> None:
        super().__init__(status)
        self.code = code
        self.status = status


def _etag_ok(wanted: Any, current: str) -> bool:
    value = strip_etag(wanted) if isinstance(wanted, str) else None
    return value in (None, "", STAR) or value == current


def _device_body(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in ("status", "statusReason", "authentication", "capabilities",
                                       "deviceScope", "parentScopes")}


def _set_twin(ident: Identity, entry: dict[str, Any], *, only_if_given: bool) -> None:
    tags, props = entry.get("tags"), entry.get("properties") or {}
    desired = props.get("desired")
    if only_if_given and tags is None and desired is None:
        return
    if tags is not None:
        ident.tags = dict(tags)
    if desired is not None:
        ident.desired = {k: v for k, v in desired.items() if not k.startswith("$")}
        ident.desired_version += 1
    ident.twin_version += 1


def apply_entry(state: HubState, devices: dict[str, Identity], entry: dict[str, Any]) -> None:
    device_id = entry["id"]
    mode = str(entry.get("importMode") or "createOrUpdate").lower()
    ident = devices.get(device_id)
    if mode.startswith("createorupdate"):  # import jobs only: create when missing, else update
        mode = "create" if ident is None else mode.replace("createorupdate", "update")
    if mode == "create":
        if ident is not None:
            raise EntryError("DeviceAlreadyExists", f"Device {device_id} already exists.")
        if len(devices) >= state.max_devices:
            raise EntryError("IotHubQuotaExceeded", "Total number of devices on the hub exceeded.")
        ident = new_identity(device_id, _device_body(entry))
        _set_twin(ident, entry, only_if_given=True)
        devices[device_id] = ident
        return
    if ident is None:
        raise EntryError("DeviceNotFound", f"Device {device_id} not found.")
    if mode.endswith("ifmatchetag"):
        twin_mode = mode.startswith("updatetwin")
        wanted = entry.get("twinETag") if twin_mode else entry.get("eTag")
        if not _etag_ok(wanted, ident.twin_etag if twin_mode else ident.etag):
            raise EntryError("PreconditionFailed", "Precondition failed: the etag does not match.")
    if mode.startswith("delete"):
        del devices[device_id]
    elif mode.startswith("updatetwin"):
        _set_twin(ident, entry, only_if_given=False)
    else:
        ident.apply_device(_device_body(entry))
        ident.etag_counter += 1
        _set_twin(ident, entry, only_if_given=True)


def _validate(entries: Any) -> list[dict[str, Any]]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise hub_error(400, "ArgumentInvalid", "The body must be an array of ExportImportDevice.")
    if len(entries) > MAX_DEVICES:
        raise hub_error(413, "TooManyDevices", f"At most {MAX_DEVICES} devices per bulk call.")
    for entry in entries:
        validate_device_id(entry.get("id") or "")
        mode = str(entry.get("importMode") or "").lower()
        if mode not in MODES:
            raise hub_error(400, "ArgumentInvalid", f"Unsupported importMode '{mode:.40}'.")
    return entries


def _duplicates(entries: list[dict[str, Any]]) -> Response | None:
    seen = Counter(entry["id"] for entry in entries)
    twice = [device_id for device_id, n in seen.items() if n > 1]
    if not twice:
        return None
    detail = f"Device(s) defined more than once: {', '.join(twice)[:200]}"
    body = {"isSuccessful": False, "warnings": [],
            "errors": [{"deviceId": d, "errorCode": "DeviceDefinedMultipleTimes", "errorStatus": detail,
                        "operation": "validate"} for d in twice],
            "Message": f"ErrorCode:DeviceDefinedMultipleTimes;{detail}"}
    return Response(400, body, {"iothub-errorcode": "DeviceDefinedMultipleTimes"})


def bulk_update(state: HubState, raw_entries: Any) -> Response:
    """Apply a bulk registry call; see the module docstring for the commit semantics."""
    entries = _validate(raw_entries)
    rejected = _duplicates(entries)
    if rejected is not None:
        return rejected
    errors: list[dict[str, Any]] = []
    with state.lock:
        devices = state.raw()
        for entry in entries:
            try:
                apply_entry(state, devices, entry)
            except (EntryError, ServiceError) as exc:
                code, status = (exc.code, exc.status) if isinstance(exc, EntryError) \
                    else (str(exc.code), exc.message)
                errors.append({"deviceId": entry["id"], "errorCode": code, "errorStatus": status,
                               "moduleId": None, "operation": entry.get("importMode")})
        state.bump()
    body = {"isSuccessful": not errors, "errors": errors, "warnings": []}
    return Response(400 if errors else 200, body)
