"""Bulk identity changes on one IoT hub: ≤100 devices a call through ``POST /devices`` (import modes).

``HubDeviceRegistry.bulk_disable`` / ``bulk_delete`` (iothub.py) are the entry points; this module holds
their round trips so that the single-device code stays short. Everything goes through the hub's
``HubClient`` (errors translated, transient ones retried), the same client the registry uses.

Not pinned by a source (docs/azure-behaviour.md §11.7): whether the service commits the successful items of a
bulk call that answers 400; this adapter assumes it does and reports only the listed devices as failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.iot.hub.models import AuthenticationMechanism, ExportImportDevice

from shared.adapters.hub_client import HubClient
from shared.adapters.read_cache import ReadCache
from shared.errors import Permanent
from shared.model import HubDeviceStatus
from shared.ports import BulkResult

BULK_LIMIT = 100  # devices per bulk registry call (docs/azure-behaviour.md §4.4)
# Device IDs safe to quote inside a registry query: the documented character set minus the quote (§2).
_QUERYABLE_ID = re.compile(r"^[A-Za-z0-9\-.%_*?!(),:=@$]{1,128}$")
_RETRY_CODE = "PreconditionFailed"

STATUS_REASON_MAX = 128  # the registry's limit (docs/azure-behaviour.md §2)


def checked_ids(device_ids: Sequence[str]) -> list[str]:
    """Distinct IDs in order; more than ``BULK_LIMIT`` is a caller error (the service answers 413)."""
    unique = list(dict.fromkeys(device_ids))
    if len(unique) > BULK_LIMIT:
        raise ValueError(f"at most {BULK_LIMIT} devices per bulk call, got {len(unique)}")
    return unique


def bulk_disable(
    client: HubClient, device_ids: Sequence[str], reason: str | Mapping[str, str] | None, *, rounds: int,
    spend: Callable[[int], object] | None = None, keyed: ReadCache | None = None,
) -> BulkResult:
    """Disable the devices (see ``HubDeviceRegistry.bulk_disable`` for the round trips); devices whose
    etag moved are retried, alone, for at most ``rounds`` rounds in all.

    ``keyed`` keeps the identities read for their keys until the bulk POST has answered: when the POST is
    throttled and the caller tries again, an identity whose etag has not moved is not read (nor paid for)
    a second time. A stale one cannot do harm: the write is conditional on its etag."""
    pending = checked_ids(device_ids)
    changed: list[str] = []
    unchanged: list[str] = []
    failed: dict[str, str] = {}
    for _ in range(rounds):
        if not pending:
            break
        current = current_models(client, pending)
        identities = _kept_identities(keyed, pending, current)
        reads = sum(1 for d in pending if needs_read(current.get(d)) and d not in identities)
        if reads and spend is not None:
            spend(reads)  # the GETs below count against the identity-registry budget
        items = []
        for device_id in pending:
            model = current.get(device_id)
            if model is None:
                failed[device_id] = "DeviceNotFound"
            elif model.status == HubDeviceStatus.DISABLED.value:
                unchanged.append(device_id)
            else:
                own = reason_for(reason, device_id)
                items.append(disable_item(client, device_id, model, own, identities))
        if keyed is not None:
            for device_id, identity in identities.items():
                keyed.put(device_id, identity)  # until the POST answers (a 429 raises past this)
        errors = post(client, items, "hub bulk disable") if items else {}
        if keyed is not None:
            for device_id in identities:
                keyed.discard(device_id)
        pending = [d for d, code in errors.items() if code == _RETRY_CODE]
        failed.update({d: code for d, code in errors.items() if code != _RETRY_CODE})
        changed.extend(item.id for item in items if item.id not in errors)
    failed.update(dict.fromkeys(pending, _RETRY_CODE))
    return BulkResult(changed=tuple(changed), unchanged=tuple(unchanged), failed=failed)


def _kept_identities(
    keyed: ReadCache | None, pending: Sequence[str], current: dict[str, Any]
) -> dict[str, Any]:
    """Identities read by an earlier, throttled attempt whose etag still matches the device's now."""
    kept: dict[str, Any] = {}
    if keyed is None:
        return kept
    for device_id in pending:
        model = current.get(device_id)
        if model is None or not needs_read(model):
            continue
        identity = keyed.take(device_id)
        if identity is not None and getattr(identity, "etag", None) == model.device_etag:
            kept[device_id] = identity
    return kept


def bulk_delete(client: HubClient, device_ids: Sequence[str]) -> BulkResult:
    """Delete the devices in one POST (``importMode: delete``); DeviceNotFound → unchanged."""
    ids = checked_ids(device_ids)
    if not ids:
        return BulkResult()
    items = [ExportImportDevice(id=d, import_mode="delete") for d in ids]
    errors = post(client, items, "hub bulk delete")
    return BulkResult(
        changed=tuple(d for d in ids if d not in errors),
        unchanged=tuple(d for d in ids if errors.get(d) == "DeviceNotFound"),
        failed={d: code for d, code in errors.items() if code != "DeviceNotFound"},
    )


def current_models(client: HubClient, device_ids: Sequence[str]) -> dict[str, Any]:
    """Current twin (or, for IDs unsafe to quote in a query, device) of each ID that exists."""
    queryable = [d for d in device_ids if _QUERYABLE_ID.match(d)]
    found: dict[str, Any] = {}
    if queryable:
        listed = ", ".join(f"'{d}'" for d in queryable)
        # IDs were matched against _QUERYABLE_ID above: no quote can reach the query text.
        sql = f"SELECT * FROM devices WHERE deviceId IN [{listed}]"  # noqa: S608
        found.update({t.device_id: t for t in client.query(sql, BULK_LIMIT) if t.device_id in device_ids})
    for device_id in device_ids:
        if device_id not in queryable:
            raw = client.get_raw(device_id)
            if raw is not None:
                found[device_id] = raw
    return found


def needs_read(model: Any) -> bool:
    """Whether ``disable_item`` must GET the identity: an enabled device the query found without its keys."""
    if model is None or model.status == HubDeviceStatus.DISABLED.value:
        return False
    from_twin = not hasattr(model, "authentication")
    auth_type = getattr(model, "authentication_type", None)
    return from_twin and auth_type not in ("selfSigned", "certificateAuthority", "none")


def reason_for(reason: str | Mapping[str, str] | None, device_id: str) -> str | None:
    """The device's statusReason (one for all, or its own), cut to what the service keeps."""
    text = reason.get(device_id) if isinstance(reason, Mapping) else reason
    return text[:STATUS_REASON_MAX] if text else None


def disable_item(client: HubClient, device_id: str, model: Any, reason: str | None,
                 identities: dict[str, Any] | None = None) -> Any:
    """An ``updateIfMatchETag`` import item that keeps the identity's authentication and scopes. A device
    whose keys only its identity carries is taken from ``identities`` or read (and added there)."""
    auth_type = getattr(model, "authentication_type", None)
    from_twin = not hasattr(model, "authentication")
    if from_twin and auth_type in ("selfSigned", "certificateAuthority", "none"):
        auth = AuthenticationMechanism(type=auth_type, x509_thumbprint=model.x509_thumbprint)
        etag = model.device_etag
    else:  # symmetric keys (or unknown): only the identity itself carries them
        if not hasattr(model, "authentication"):
            model = (identities or {}).get(device_id) or client.get_raw(device_id) or model
            if identities is not None and hasattr(model, "authentication"):
                identities[device_id] = model
        auth = getattr(model, "authentication", None)
        etag = getattr(model, "etag", None) if hasattr(model, "authentication") else model.device_etag
    return ExportImportDevice(
        id=device_id, e_tag=etag, import_mode="updateIfMatchETag" if etag else "update",
        status=HubDeviceStatus.DISABLED.value, status_reason=reason, authentication=auth,
        capabilities=model.capabilities, device_scope=model.device_scope,
        parent_scopes=model.parent_scopes,
    )


def post(client: HubClient, items: list[Any], what: str) -> dict[str, str]:
    """One bulk POST (retried when transient); the per-device error codes it reports."""
    result = client.call(what, lambda: client.manager.bulk_create_or_update_devices(items))
    if result is None or result.is_successful:
        return {}
    errors = {e.device_id: str(e.error_code) for e in (result.errors or []) if e.device_id}
    if not errors:
        # The SDK turns a 400 into a result; with no per-device errors the whole call was refused.
        raise Permanent(
            f"{what} ({client.hub}): rejected without per-device errors",
            code="BulkRegistryOperationFailure",
        )
    return errors
