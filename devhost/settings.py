"""Host-side settings: local.settings.json, host.json and connection resolution, as the host does them.

The app's own settings live in ``shared/adapters/settings.py``; this module only knows what the host needs to
drive triggers (queue options, route prefix, connection strings, ``%NAME%`` expressions).
Rules come from docs/azure-behaviour.md §F2, §F4, §F6, §F10.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEV_ACCOUNT = "devstoreaccount1"
# The documented, public Azurite development account key (not a secret).
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
HOST_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"
_EXPRESSION = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


class HostSettingsError(Exception):
    """A host setting, host.json or local.settings.json is missing or malformed."""

    def __init__(self, message: str, *, code: str = "InvalidHostSetting") -> None:
        super().__init__(message)
        self.code = code


def development_storage(queue_port: int = 10001, table_port: int = 10002, blob_port: int = 10000) -> str:
    """The explicit Azurite connection string behind ``UseDevelopmentStorage=true``
    (docs/azure-behaviour.md §F7)."""
    base = "http://127.0.0.1:{port}/" + DEV_ACCOUNT
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
        f"BlobEndpoint={base.format(port=blob_port)};QueueEndpoint={base.format(port=queue_port)};"
        f"TableEndpoint={base.format(port=table_port)};"
    )


def parse_timespan(value: str | float | int) -> float:
    """Seconds in a .NET TimeSpan string ``[d.]hh:mm:ss[.fff]`` (host.json format); numbers pass through."""
    if isinstance(value, int | float):
        return float(value)
    match = _TIMESPAN.match(value.strip())
    if not match:
        raise HostSettingsError(f"not a TimeSpan (expected [d.]hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json with the Storage Queues 5.x defaults (local polling: 2 s)."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 2.0
    min_polling_interval: float = 0.1
    message_encoding: str = "base64"

    @property
    def max_in_flight(self) -> int:
        """Concurrent invocations per queue function: batchSize + newBatchThreshold
        (docs/azure-behaviour.md §F2)."""
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class ServiceBusOptions:
    """``extensions.serviceBus`` settings the host honours, with the extension 5.x defaults
    (docs/azure-behaviour.md §F3): the trigger's concurrency, prefetch, auto-completion and lock renewal."""

    auto_complete_messages: bool = True
    max_concurrent_calls: int = 16
    prefetch_count: int = 0
    max_auto_lock_renewal_duration: float = 300.0


@dataclass(frozen=True)
class HostConfig:
    """What the host reads from host.json (after ``AzureFunctionsJobHost__`` overrides)."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    service_bus: ServiceBusOptions = field(default_factory=ServiceBusOptions)


def load_local_settings(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``(Values, ConnectionStrings)`` of a local.settings.json; a missing file gives two empty maps."""
    if not path.is_file():
        return {}, {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HostSettingsError(f"{path.name} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if doc.get("IsEncrypted"):
        raise HostSettingsError(f"{path.name} is encrypted; devhost reads plain settings only")
    values = {str(k): str(v) for k, v in (doc.get("Values") or {}).items() if v is not None}
    conns = {str(k): str(v) for k, v in (doc.get("ConnectionStrings") or {}).items() if v is not None}
    return values, conns


def merge_into_environ(values: Mapping[str, str], environ: MutableMapping[str, str]) -> list[str]:
    """Copy settings into the environment without overriding existing variables; returns the names added."""
    added = [name for name in values if name not in environ]
    for name in added:
        environ[name] = values[name]
    return added


def _apply_overrides(doc: dict[str, Any], settings: Mapping[str, str]) -> None:
    """Apply ``AzureFunctionsJobHost__a__b=value`` app settings on top of host.json
    (docs/azure-behaviour.md §F10.2)."""
    for key, value in settings.items():
        if not key.startswith(HOST_OVERRIDE_PREFIX):
            continue
        parts = key[len(HOST_OVERRIDE_PREFIX) :].split("__")
        node = doc
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value


def _int(block: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    raw = block.get(key, default)
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise HostSettingsError(f"host.json {key} must be an integer, got {raw!r}") from exc
    if not low <= value <= high:
        raise HostSettingsError(f"host.json {key} must be in {low}..{high}, got {value}")
    return value


def _bool(raw: Any) -> bool:
    return raw if isinstance(raw, bool) else str(raw).strip().lower() == "true"


def read_host_json(app_root: Path, settings: Mapping[str, str] | None = None) -> HostConfig:
    """Parse ``<app_root>/host.json`` (version 2.0 required) into a :class:`HostConfig`."""
    path = app_root / "host.json"
    doc: dict[str, Any] = {"version": "2.0"}
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise HostSettingsError(f"host.json is not valid JSON: {exc.msg}") from exc
    if doc.get("version") != "2.0":
        raise HostSettingsError('host.json must have "version": "2.0"')
    _apply_overrides(doc, settings or {})
    ext = doc.get("extensions") or {}
    http, q, sb = ext.get("http") or {}, ext.get("queues") or {}, ext.get("serviceBus") or {}
    batch = _int(q, "batchSize", 16, 1, 32)
    encoding = str(q.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostSettingsError(f"host.json messageEncoding must be base64 or none, got {encoding!r}")
    queues = QueueOptions(
        batch_size=batch,
        new_batch_threshold=_int(q, "newBatchThreshold", batch // 2, 0, 10_000),
        max_dequeue_count=_int(q, "maxDequeueCount", 5, 1, 10_000),
        visibility_timeout=parse_timespan(q.get("visibilityTimeout", "00:00:00")),
        max_polling_interval=max(0.1, parse_timespan(q.get("maxPollingInterval", "00:00:02"))),
        message_encoding=encoding,
    )
    service_bus = ServiceBusOptions(
        auto_complete_messages=_bool(sb.get("autoCompleteMessages", True)),
        max_concurrent_calls=_int(sb, "maxConcurrentCalls", 16, 1, 10_000),
        prefetch_count=_int(sb, "prefetchCount", 0, 0, 100_000),
        max_auto_lock_renewal_duration=parse_timespan(sb.get("maxAutoLockRenewalDuration", "00:05:00")),
    )
    prefix = str(http.get("routePrefix", "api")).strip("/")
    return HostConfig(route_prefix=prefix, queues=queues, service_bus=service_bus)


def resolve_expression(text: str, settings: Mapping[str, str]) -> str:
    """Replace each ``%NAME%`` with the app setting NAME, as the host does for binding attributes."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise HostSettingsError(
                f"app setting {name!r} used in a binding expression is not set", code="MissingAppSetting"
            )
        return settings[name]

    return _EXPRESSION.sub(lookup, text)


def resolve_connection(
    name: str | None,
    settings: Mapping[str, str],
    *,
    connection_strings: Mapping[str, str] | None = None,
    dev_storage: str | None = None,
) -> str | None:
    """Connection string for a binding's ``connection`` (docs/azure-behaviour.md §F6); None when no key has a
    value.

    ``AzureWebJobs<name>`` is tried before ``<name>``; ``ConnectionStrings`` entries before plain settings.
    ``UseDevelopmentStorage=true`` becomes the explicit Azurite form (``dev_storage``, else default ports).
    """
    base = name or "AzureWebJobsStorage"
    conns = connection_strings or {}
    for key in (f"AzureWebJobs{base}", base):
        value = conns.get(key) or settings.get(f"ConnectionStrings__{key}") or settings.get(key)
        if value:
            if value.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
                return dev_storage or development_storage()
            return value
    return None


def has_identity_group(name: str, settings: Mapping[str, str]) -> bool:
    """True when ``<name>__…`` settings exist (identity-based connection, docs/azure-behaviour.md §F10.7)."""
    prefix = f"{name}__"
    return any(key.startswith(prefix) for key in settings)
