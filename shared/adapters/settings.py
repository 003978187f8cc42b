"""The app's settings in one place: one documented name per setting, read once into a frozen object.

Read from a mapping (the environment, or ``local.settings.json`` ``Values`` loaded into it with
``load_local_settings``). ``repr`` never shows a key, SAS token or connection string.

Connection settings (``JOURNAL_CONNECTION``, ``SERVICEBUS_CONNECTION``, ``OUTCOME_SERVICEBUS_CONNECTION``)
resolve like a Functions binding's ``connection`` (docs/azure-behaviour.md §F6, §F10.7):
``AzureWebJobs<name>`` then ``<name>``, each time ``ConnectionStrings:<name>`` first; a value is a
connection string; no value but ``<name>__*`` keys is an identity-based connection (e.g.
``<name>__tableServiceUri``, ``<name>__fullyQualifiedNamespace``, ``<name>__credential``,
``<name>__clientId``; storage clients are built from either form in ``storage_connection.py``).
Our addition (not host behaviour): a value without ``=`` names another connection setting, e.g.
``JOURNAL_CONNECTION=MyStorage``. ``JOURNAL_CONNECTION`` falls back to ``AzureWebJobsStorage``.
``UseDevelopmentStorage=true`` is expanded to the explicit Azurite form on the default ports
(10000-10002), because ``azure-data-tables`` does not understand the shorthand.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shared.errors import Permanent

DPS_CONNECTION_STRING = "DPS_CONNECTION_STRING"
IOTHUB_CONNECTIONS = "IOTHUB_CONNECTIONS"
JOURNAL_CONNECTION = "JOURNAL_CONNECTION"
LIFECYCLE_QUEUE = "LIFECYCLE_QUEUE"
WORK_QUEUE = "WORK_QUEUE"
AUDIT_SCHEDULE = "AUDIT_SCHEDULE"
AUDIT_QUEUE = "AUDIT_QUEUE"
AUDIT_STUCK_AFTER_MINUTES = "AUDIT_STUCK_AFTER_MINUTES"
POLICY_OVERRIDE = "POLICY_OVERRIDE"
OUTCOME_SERVICEBUS_CONNECTION = "OUTCOME_SERVICEBUS_CONNECTION"
OUTCOME_QUEUE_OR_TOPIC = "OUTCOME_QUEUE_OR_TOPIC"
SERVICEBUS_CONNECTION = "SERVICEBUS_CONNECTION"
SERVICEBUS_QUEUE = "SERVICEBUS_QUEUE"
GROUP_IMPORT_JOB_THRESHOLD = "GROUP_IMPORT_JOB_THRESHOLD"
STORM_COALESCING = "STORM_COALESCING"
STORM_JOB_THRESHOLD = "STORM_JOB_THRESHOLD"
IOTHUB_REGISTRY_OPS_PER_MINUTE = "IOTHUB_REGISTRY_OPS_PER_MINUTE"
EMULATOR_CA_BUNDLE = "EMULATOR_CA_BUNDLE"
CERT_EXPIRY_WARNING_DAYS = "CERT_EXPIRY_WARNING_DAYS"
AUDIT_REMEDIATE = "AUDIT_REMEDIATE"
JOURNAL_TABLE_PREFIX = "JOURNAL_TABLE_PREFIX"
FORCE_SOURCES = "FORCE_SOURCES"
# In IOTHUB_CONNECTIONS, this value (or "") marks a hub reached with azure-identity instead of a key.
IDENTITY_BASED = "identity"
HOST_STORAGE = "AzureWebJobsStorage"

DEV_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
_QUEUE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_SECRET_WORDS = ("secret", "key", "password", "token")
_HUB_HOST = re.compile(r"^[a-z0-9][a-z0-9.:-]{0,252}$")  # host name, optional ':port' (a throttle RowKey)
# identity-registry ops/min of one S1/S2 unit (docs/azure-behaviour.md §8.1)
S1_REGISTRY_OPS_PER_MINUTE = 100.0


class SettingsError(Permanent):
    """A setting is missing or malformed; names the setting, never echoes its value."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        super().__init__(f"setting {setting}: {reason}")


@dataclass(frozen=True)
class Connection:
    """A resolved connection: a connection string, or identity-based ``properties`` (``X__*`` keys)."""

    name: str
    connection_string: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None

    def property(self, key: str) -> str:
        """``<name>__<key>`` of an identity-based connection, matched without regard to case (the host's
        configuration is case-insensitive); "" when absent."""
        for name, value in self.properties.items():
            if name.lower() == key.lower():
                return value.strip()
        return ""

    def service_uri(self, service: str) -> str | None:
        """``table``/``queue``/``blob`` endpoint of an identity-based storage connection: ``__<service>
        ServiceUri``, else derived from ``__accountName`` (public cloud); None without either. Clients and
        the azure-identity credential are built in shared.adapters.storage_connection."""
        account = self.property("accountName")
        return self.property(f"{service}ServiceUri") or (
            f"https://{account}.{service}.core.windows.net" if account else None)

    def __repr__(self) -> str:
        shown = {k: ("<hidden>" if any(w in k.lower() for w in _SECRET_WORDS) else v)
                 for k, v in self.properties.items()}
        secret = "<hidden>" if self.connection_string else None
        return f"Connection(name={self.name!r}, connection_string={secret}, properties={shown})"


def _get(values: Mapping[str, str], key: str) -> str | None:
    value = values.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def resolve_connection(
    values: Mapping[str, str], name: str, _seen: frozenset[str] = frozenset()
) -> Connection | None:
    """Resolve a connection setting name as the Functions host does (module docstring); None if absent."""
    if name in _seen:
        raise SettingsError(name, "connection settings refer to each other in a loop")
    for key in (f"AzureWebJobs{name}", name):
        for candidate in (f"ConnectionStrings:{key}", f"ConnectionStrings__{key}", key):
            value = _get(values, candidate)
            if value is None:
                continue
            if "=" not in value:
                return resolve_connection(values, value, _seen | {name})
            if value.replace(" ", "").lower() == "usedevelopmentstorage=true":
                value = DEV_STORAGE
            return Connection(name=key, connection_string=value)
    for key in (f"AzureWebJobs{name}", name):
        prefix = f"{key}__"
        props = {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix) and v}
        if props:
            return Connection(name=key, properties=MappingProxyType(props))
    return None


def connection_string_host(connection_string: str) -> str | None:
    """The ``HostName`` part of an IoT connection string (safe to show)."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return parts.get("HostName")


def _iot_connection_string(setting: str, value: str) -> str:
    parts = dict(p.split("=", 1) for p in value.split(";") if "=" in p)
    missing = [p for p in ("HostName", "SharedAccessKeyName", "SharedAccessKey") if not parts.get(p)]
    if missing:
        raise SettingsError(setting, f"connection string lacks {', '.join(missing)}")
    return value


def _hub_map(values: Mapping[str, str]) -> Mapping[str, str | None]:
    raw = _get(values, IOTHUB_CONNECTIONS)
    if raw is None:
        return MappingProxyType({})
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        raise SettingsError(IOTHUB_CONNECTIONS, "not JSON (want {hub host: connection string})") from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise SettingsError(IOTHUB_CONNECTIONS, "want a JSON object of hub host name -> connection string")
    hubs: dict[str, str | None] = {}
    for hub, conn in parsed.items():
        if conn.strip().lower() in ("", IDENTITY_BASED):
            hubs[hub.lower()] = None
            continue
        _iot_connection_string(f"{IOTHUB_CONNECTIONS}[{hub}]", conn)
        if (connection_string_host(conn) or "").lower() != hub.lower():
            raise SettingsError(f"{IOTHUB_CONNECTIONS}[{hub}]", "HostName of the connection string differs")
        hubs[hub.lower()] = conn
    return MappingProxyType(hubs)


@dataclass(frozen=True)
class RegistryBudgets:
    """Identity-registry budget in ops/min (``IOTHUB_REGISTRY_OPS_PER_MINUTE``): ``hubs`` by lower-case host
    name, ``default`` for every other hub (S1 x 1 unit unless the setting is a single number)."""

    default: float = S1_REGISTRY_OPS_PER_MINUTE
    hubs: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def for_hub(self, hub: str) -> float:
        return self.hubs.get(hub.lower(), self.default)


def _rate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        return None
    return float(value)


def _registry_budgets(values: Mapping[str, str]) -> RegistryBudgets:
    raw = _get(values, IOTHUB_REGISTRY_OPS_PER_MINUTE)
    if raw is None:
        return RegistryBudgets()
    want = "want a positive number, or a JSON object of hub host name -> positive number"
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        raise SettingsError(IOTHUB_REGISTRY_OPS_PER_MINUTE, want) from None
    if not isinstance(parsed, dict):
        rate = _rate(parsed)
        if rate is None:
            raise SettingsError(IOTHUB_REGISTRY_OPS_PER_MINUTE, want)
        return RegistryBudgets(default=rate)
    hubs: dict[str, float] = {}
    for hub, value in parsed.items():
        rate = _rate(value)
        if rate is None or not _HUB_HOST.match(hub.strip().lower()):
            raise SettingsError(f"{IOTHUB_REGISTRY_OPS_PER_MINUTE}[{hub[:64]}]", want)
        hubs[hub.strip().lower()] = rate
    return RegistryBudgets(hubs=MappingProxyType(hubs))


def _table_prefix(values: Mapping[str, str]) -> str:
    prefix = _get(values, JOURNAL_TABLE_PREFIX) or ""
    # Table names are 3-63 alphanumerics starting with a letter; the prefix must keep them so.
    if prefix and not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,31}", prefix):
        raise SettingsError(JOURNAL_TABLE_PREFIX, "want a letter then up to 31 letters or digits")
    return prefix


def _int(values: Mapping[str, str], key: str, default: int) -> int:
    raw = _get(values, key)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise SettingsError(key, "expected a positive whole number")
    return int(raw)


def _bool(values: Mapping[str, str], key: str, default: bool) -> bool:
    raw = _get(values, key)
    if raw is None:
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise SettingsError(key, "expected true or false")


def _force_sources(values: Mapping[str, str]) -> frozenset[str]:
    """Event ``source`` values trusted to force a ``found`` over queues. Matched exactly (no case folding):
    a trust list must not widen by accident. Empty or unset: no queue message may force."""
    raw = _get(values, FORCE_SOURCES) or ""
    sources = frozenset(part.strip() for part in raw.split(",") if part.strip())
    if any(len(source) > 128 or not source.isprintable() for source in sources):
        raise SettingsError(FORCE_SOURCES, "want comma-separated event sources (printable, 1-128 characters)")
    return sources


def _queue(values: Mapping[str, str], key: str, default: str) -> str:
    name = _get(values, key) or default
    if not _QUEUE_NAME.match(name):
        raise SettingsError(key, "not a storage queue name (3-63 lower-case letters, digits, single hyphens)")
    return name


def _schedule(values: Mapping[str, str]) -> str:
    schedule = _get(values, AUDIT_SCHEDULE) or "0 0 * * * *"
    is_timespan = re.fullmatch(r"\d{1,2}:\d{2}:\d{2}", schedule) is not None
    if not is_timespan and len(schedule.split()) != 6:
        raise SettingsError(AUDIT_SCHEDULE, "expected a six-field NCRONTAB expression or hh:mm:ss")
    return schedule


def _policy(values: Mapping[str, str]) -> Mapping[str, Any] | None:
    raw = _get(values, POLICY_OVERRIDE)
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        raise SettingsError(POLICY_OVERRIDE, "not JSON") from None
    if not isinstance(parsed, dict):
        raise SettingsError(POLICY_OVERRIDE, "expected a JSON object")
    return MappingProxyType(parsed)


@dataclass(frozen=True, repr=False)
class Settings:
    dps_connection_string: str | None = None
    # hub host name (lower case) -> connection string, or None for identity-based access to that hub.
    iothub_connections: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    journal: Connection | None = None
    lifecycle_queue: str = "device-lifecycle"
    work_queue: str = "device-lifecycle-work"
    audit_schedule: str = "0 0 * * * *"
    audit_queue: str = "device-lifecycle-audit"  # requested audits (POST /api/audit) wait here
    audit_stuck_after_minutes: int = 60  # the audit reports events unfinished for longer (our choice)
    policy_override: Mapping[str, Any] | None = None
    outcome_servicebus: Connection | None = None
    outcome_queue_or_topic: str | None = None
    servicebus: Connection | None = None
    servicebus_queue: str | None = None
    group_import_job_threshold: int = 1000  # our choice: above this many devices, use an import job
    storm_coalescing: bool = True  # single devices' hub steps may wait in a per-hub set (docs/engine.md)
    storm_job_threshold: int = 50  # our choice: a hub's set this large goes by an import job
    emulator_ca_bundle: str | None = None
    cert_expiry_warning_days: int = 30  # our choice; not pinned by a source
    audit_remediate: bool = False
    journal_table_prefix: str = ""  # lets several apps or test runs share one storage account
    registry_budgets: RegistryBudgets = field(default_factory=RegistryBudgets)
    force_sources: frozenset[str] = frozenset()  # event sources allowed to force over queues (none)

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        dps = _get(values, DPS_CONNECTION_STRING)
        outcome = resolve_connection(values, OUTCOME_SERVICEBUS_CONNECTION)
        destination = _get(values, OUTCOME_QUEUE_OR_TOPIC)
        if (outcome is None) != (destination is None):
            raise SettingsError(OUTCOME_QUEUE_OR_TOPIC, f"set together with {OUTCOME_SERVICEBUS_CONNECTION}")
        return cls(
            dps_connection_string=_iot_connection_string(DPS_CONNECTION_STRING, dps) if dps else None,
            iothub_connections=_hub_map(values),
            journal=(resolve_connection(values, JOURNAL_CONNECTION)
                     or resolve_connection(values, HOST_STORAGE)),
            lifecycle_queue=_queue(values, LIFECYCLE_QUEUE, "device-lifecycle"),
            work_queue=_queue(values, WORK_QUEUE, "device-lifecycle-work"),
            audit_schedule=_schedule(values),
            audit_queue=_queue(values, AUDIT_QUEUE, "device-lifecycle-audit"),
            audit_stuck_after_minutes=_int(values, AUDIT_STUCK_AFTER_MINUTES, 60),
            policy_override=_policy(values),
            outcome_servicebus=outcome,
            outcome_queue_or_topic=destination,
            servicebus=resolve_connection(values, SERVICEBUS_CONNECTION),
            servicebus_queue=_get(values, SERVICEBUS_QUEUE),
            group_import_job_threshold=_int(values, GROUP_IMPORT_JOB_THRESHOLD, 1000),
            storm_coalescing=_bool(values, STORM_COALESCING, True),
            storm_job_threshold=_int(values, STORM_JOB_THRESHOLD, 50),
            emulator_ca_bundle=_get(values, EMULATOR_CA_BUNDLE),
            cert_expiry_warning_days=_int(values, CERT_EXPIRY_WARNING_DAYS, 30),
            audit_remediate=_bool(values, AUDIT_REMEDIATE, False),
            journal_table_prefix=_table_prefix(values),
            registry_budgets=_registry_budgets(values),
            force_sources=_force_sources(values),
        )

    @classmethod
    def from_env(cls) -> Settings:
        return cls.from_mapping(os.environ)

    def iothub_connection(self, hub: str) -> str | None:
        """The connection string for a hub host name; None means identity-based access to that hub."""
        return self.iothub_connections.get(hub.lower())

    def __repr__(self) -> str:
        dps = connection_string_host(self.dps_connection_string) if self.dps_connection_string else None
        return (
            f"Settings(dps={dps!r}, hubs={sorted(self.iothub_connections)}, journal={self.journal!r}, "
            f"lifecycle_queue={self.lifecycle_queue!r}, work_queue={self.work_queue!r}, "
            f"audit_schedule={self.audit_schedule!r}, policy_override={self.policy_override is not None}, "
            f"outcome={self.outcome_servicebus!r}->{self.outcome_queue_or_topic!r}, "
            f"servicebus={self.servicebus!r}, servicebus_queue={self.servicebus_queue!r}, "
            f"group_import_job_threshold={self.group_import_job_threshold}, "
            f"storm_coalescing={self.storm_coalescing}, storm_job_threshold={self.storm_job_threshold}, "
            f"emulator_ca_bundle={self.emulator_ca_bundle!r}, "
            f"cert_expiry_warning_days={self.cert_expiry_warning_days}, "
            f"audit_remediate={self.audit_remediate}, registry_budgets={self.registry_budgets!r}, "
            f"force_sources={sorted(self.force_sources)})"
        )

    __str__ = __repr__


def emulator_values(path: Path, storage_connection: str) -> dict[str, str]:
    """Settings values for a running emulator, from the ``emulator.json`` it wrote."""
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    hubs = {hub["hostName"]: hub["connectionString"] for hub in config.get("hubs", [])}
    values = {
        DPS_CONNECTION_STRING: config["dps"]["connectionString"],
        IOTHUB_CONNECTIONS: json.dumps(hubs),
        JOURNAL_CONNECTION: storage_connection,
    }
    if config.get("caBundle"):
        values[EMULATOR_CA_BUNDLE] = str(config["caBundle"])
    return values


def from_emulator(path: Path, storage_connection: str, base: Mapping[str, str] | None = None) -> Settings:
    """``base`` (e.g. the environment) with DPS, hubs, CA bundle and journal taken from the emulator."""
    return Settings.from_mapping({**(base or {}), **emulator_values(path, storage_connection)})


def load_local_settings(path: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put ``Values`` (and ``ConnectionStrings`` as ``ConnectionStrings:<name>``) of a local.settings.json
    into the environment without overriding variables already set, as the Functions host does.
    Returns what was read (not only what was applied)."""
    target = os.environ if environ is None else environ
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    read: dict[str, str] = {}
    for name, value in (document.get("Values") or {}).items():
        read[name] = value if isinstance(value, str) else json.dumps(value)
    for name, value in (document.get("ConnectionStrings") or {}).items():
        read[f"ConnectionStrings:{name}"] = str(value)
    for name, value in read.items():
        target.setdefault(name, value)
    return read
