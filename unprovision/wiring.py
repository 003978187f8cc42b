"""Builds the app's adapters from ``Settings``: the one place that knows which adapter implements which port.

``build_services(settings)`` returns a frozen ``Services``; ``services()`` is the lazy per-process instance
the trigger functions use (built from the environment on first use, then reused by every invocation of
this worker process); ``reset_services()`` drops it (tests, settings changes) and ``install_services(s)``
replaces it (tests that wire the app to an emulator and Azurite themselves).

Storage: the journal and the audit tables live in ``Settings.journal`` (``JOURNAL_CONNECTION``, falling
back to ``AzureWebJobsStorage``). Queues (work queue, poison queue) live in the host's storage,
``AzureWebJobsStorage``, resolved like a binding's connection, in either form (``storage_account``); when
that is not set (CLI with ``--emulator``), the journal's account is used. ``JOURNAL_TABLE_PREFIX``
prefixes the table names so several apps or test runs can share one account. Nothing here logs a key,
SAS token or connection string.

Registry budget: ``rate_limiter`` is a ``TableRateLimiter`` (table ``<prefix>throttle`` in the journal's
account, connection string or identity-based), so one per-hub budget holds across Function instances;
budgets come from ``IOTHUB_REGISTRY_OPS_PER_MINUTE`` (default S1 x 1 unit). Import jobs for large groups
(in-process group work): enabled when the storage connection string names an account key (``import_jobs``);
parsing that string and creating the working containers are adapter work (``shared.adapters.hub_jobs``:
``blob_account``, ``create_container``), the container names (``import_container_name``) are wiring's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from shared.adapters.audit_tables import TableAuditLease, TableAuditReportStore, TableSuppressionStore
from shared.adapters.blob_container import BlobContainer, blob_account, create_container
from shared.adapters.dps import DpsProvisioningService
from shared.adapters.hub_jobs import JOB_SAS_TTL, HubImportJobs, job_manager
from shared.adapters.iothub import HubRegistries
from shared.adapters.journal_tables import TableJournal, identity_table_service
from shared.adapters.notifier import OutcomeNotifier, OutcomeSender, ServiceBusOutcomeSender
from shared.adapters.pending_tables import TablePendingHubSteps
from shared.adapters.poison_queue import StoragePoisonQueue, poison_queue_name
from shared.adapters.queues import StorageQueueSender
from shared.adapters.ratelimit_tables import TableRateLimiter
from shared.adapters.settings import (
    DPS_CONNECTION_STRING,
    HOST_STORAGE,
    Connection,
    Settings,
    SettingsError,
    resolve_connection,
)
from shared.policy import Policy, load_policy
from shared.ports import (
    AuditLease,
    AuditReportStore,
    DeviceRegistries,
    Journal,
    Notifier,
    PoisonQueue,
    ProvisioningService,
    RateLimiter,
    SuppressionStore,
    WorkQueue,
)
from unprovision.audit.requests import AuditService
from unprovision.audit.run import AuditPorts
from unprovision.audit.settings import AuditSettings
from unprovision.engine.core import Engine
from unprovision.engine.inventory import GroupCache
from unprovision.group.inprocess import GroupWork
from unprovision.group.jobs import ImportJobs
from unprovision.storm.coalesce import Storm
from unprovision.throttle import HubBudget, InMemoryRateLimiter

log = logging.getLogger(__name__)
IMPORT_CONTAINER_PREFIX = "unprovision-import-"


@dataclass(frozen=True)
class Services:
    """Everything an entry point needs; ``notifier`` and ``work_queue`` are None when not configured.

    ``engine`` is THE way an event is applied (every trigger, remediation and the CLI go through
    ``engine.apply``). ``work_queue`` set means group work scales out through the work queue (the function
    app); ``in_process`` gives the CLI's variant, which purges in process with a progress bar.
    """

    dps: ProvisioningService
    registries: DeviceRegistries
    journal: Journal
    notifier: Notifier | None
    work_queue: WorkQueue | None
    poison_queues: tuple[PoisonQueue, ...]
    reports: AuditReportStore
    suppressions: SuppressionStore
    rate_limiter: RateLimiter
    policy: Policy
    settings: Settings
    engine: Engine
    audit_lease: AuditLease | None = None
    audit_queue: WorkQueue | None = None
    group_cache: GroupCache = field(default_factory=GroupCache)
    import_jobs: ImportJobs | None = None

    def in_process(self) -> Services:
        """The same services with group work purged here instead of through the work queue."""
        return replace(self, work_queue=None, engine=replace(self.engine, work_queue=None, storm=None))


def storage_connection_string(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """The host storage (``AzureWebJobsStorage``) as a connection string; else the journal's account."""
    host = resolve_connection(os.environ if environ is None else environ, HOST_STORAGE)
    if host is not None and host.connection_string:
        return host.connection_string
    journal = settings.journal
    return journal.connection_string if journal is not None else None


def storage_account(settings: Settings, environ: Mapping[str, str] | None = None) -> Connection | None:
    """The host storage (``AzureWebJobsStorage``) in either form (a connection string, or identity-based
    ``AzureWebJobsStorage__accountName`` / ``__queueServiceUri``; shared.adapters.storage_connection);
    else the journal's account. The work, audit and poison queues live here."""
    host = resolve_connection(os.environ if environ is None else environ, HOST_STORAGE)
    return host if host is not None else settings.journal


def _audit_stores(connection: Connection, prefix: str) -> tuple[AuditReportStore, SuppressionStore]:
    if connection.connection_string is not None:
        conn = connection.connection_string
        return (TableAuditReportStore.from_connection_string(conn, prefix=prefix),
                TableSuppressionStore.from_connection_string(conn, prefix=prefix))
    service = identity_table_service(connection)
    return TableAuditReportStore(service, prefix=prefix), TableSuppressionStore(service, prefix=prefix)


def _notifier(settings: Settings, sender: OutcomeSender | None) -> Notifier | None:
    """Outcome notifications on Service Bus, off unless both settings are present (or a sender is given)."""
    connection, entity = settings.outcome_servicebus, settings.outcome_queue_or_topic
    if sender is None:
        if connection is None or entity is None:
            return None
        namespace = connection.properties.get("fullyQualifiedNamespace")
        sender = ServiceBusOutcomeSender(connection.connection_string or "", entity,
                                         fully_qualified_namespace=namespace)

    def on_error(exc: Exception) -> None:
        log.warning("outcome notification failed: %s", type(exc).__name__)

    return OutcomeNotifier(sender, on_error=on_error)


def rate_limiter(settings: Settings, prefix: str) -> RateLimiter:
    """The per-hub identity-registry budget: a token bucket in the journal's account (``<prefix>throttle``),
    shared by every Function instance, whether the journal is a connection string or identity-based. Only
    without a journal does it fall back to the ``InMemoryRateLimiter`` (the budget then holds per process)."""
    budgets = settings.registry_budgets
    per_hub = {hub: HubBudget(rate, rate) for hub, rate in budgets.hubs.items()}
    default = HubBudget(budgets.default, budgets.default)
    journal = settings.journal
    if journal is not None:
        return TableRateLimiter.from_connection_string(journal, prefix=prefix, budgets=per_hub,
                                                       default=default)
    return InMemoryRateLimiter(per_hub, default=default)


def import_container_name(hub: str, prefix: str = "") -> str:
    """One working container per hub (and table prefix): the service's error log has a fixed blob name."""
    digest = hashlib.sha256(f"{prefix}|{hub.lower()}".encode()).hexdigest()[:16]
    return f"{IMPORT_CONTAINER_PREFIX}{digest}"


def import_jobs(settings: Settings, storage: str | None, prefix: str = "") -> ImportJobs | None:
    """``GroupWork.import_jobs`` over the storage account's blob service; None without an account key.
    A hub without a connection string (identity-based or not configured) gets None: it stays on the bulk
    path. A runner is made per purge (its container SAS lives ``JOB_SAS_TTL``, 12 h: long enough for the
    export and import of a full hub); each container is created once."""
    account = blob_account(storage) if storage else None
    if account is None:
        return None
    created: set[str] = set()
    lock = threading.Lock()

    def for_hub(hub: str) -> HubImportJobs | None:
        connection = settings.iothub_connection(hub)
        if connection is None:
            return None
        name = import_container_name(hub, prefix)
        with lock:
            if name not in created:
                create_container(account, name)
                created.add(name)
        container = BlobContainer.for_account(account.endpoint, account.name, account.key, name,
                                              ttl=JOB_SAS_TTL)
        return HubImportJobs(hub, job_manager(connection, settings.emulator_ca_bundle), container)

    return for_hub


def build_services(settings: Settings, *, table_prefix: str | None = None,
                   outcome_sender: OutcomeSender | None = None,
                   environ: Mapping[str, str] | None = None) -> Services:
    """Adapters for ``settings``. ``outcome_sender`` replaces the Service Bus sender (tests: a recording fake
    at that boundary); ``table_prefix`` defaults to the ``JOURNAL_TABLE_PREFIX`` setting."""
    env = os.environ if environ is None else environ
    if settings.dps_connection_string is None:
        raise SettingsError(DPS_CONNECTION_STRING, "not set")
    if settings.journal is None:
        raise SettingsError(HOST_STORAGE, "no journal storage (JOURNAL_CONNECTION or AzureWebJobsStorage)")
    prefix = settings.journal_table_prefix if table_prefix is None else table_prefix
    ca = settings.emulator_ca_bundle
    dps = DpsProvisioningService.from_connection_string(settings.dps_connection_string, ca_bundle=ca)
    registries = HubRegistries(dict(settings.iothub_connections), ca_bundle=ca)
    journal = TableJournal.from_connection(settings.journal, prefix=prefix)
    reports, suppressions = _audit_stores(settings.journal, prefix)
    storage = storage_account(settings, env)  # either form; import jobs below need an account key
    work_queue = StorageQueueSender(storage, settings.work_queue) if storage else None
    poison = tuple(StoragePoisonQueue.from_connection(storage, poison_queue_name(queue))
                   for queue in (settings.lifecycle_queue, settings.work_queue)) if storage else ()
    limiter = rate_limiter(settings, prefix)
    notifier = _notifier(settings, outcome_sender)
    policy = load_policy(settings.policy_override)
    jobs = import_jobs(settings, storage_connection_string(settings, env), prefix)
    cache = GroupCache()
    storm = _storm(settings, work_queue, limiter, jobs, prefix)
    engine = Engine(
        dps=dps, registries=registries, journal=journal, policy=policy, notifier=notifier,
        work_queue=work_queue, group_cache=cache, force_sources=settings.force_sources,
        group_work=GroupWork(limiter=limiter, import_job_threshold=settings.group_import_job_threshold,
                             import_jobs=jobs),
        storm=storm,
    )
    services = Services(
        dps=dps, registries=registries, journal=journal, notifier=notifier, work_queue=work_queue,
        poison_queues=poison, reports=reports, suppressions=suppressions, rate_limiter=limiter, policy=policy,
        settings=settings, engine=engine, audit_lease=_audit_lease(settings.journal, prefix),
        audit_queue=StorageQueueSender(storage, settings.audit_queue) if storage else None,
        group_cache=cache, import_jobs=jobs,
    )
    log.info("services built: %r", settings)  # Settings.__repr__ hides every secret
    return services


def _storm(settings: Settings, queue: WorkQueue | None, limiter: RateLimiter, jobs: ImportJobs | None,
           prefix: str) -> Storm | None:
    """Storm coalescing needs the work queue (flush messages) and the journal's storage (the sets)."""
    if not settings.storm_coalescing or queue is None or settings.journal is None:
        return None
    pending = TablePendingHubSteps.from_connection(settings.journal, prefix=prefix)
    return Storm(pending=pending, queue=queue, limiter=limiter, job_threshold=settings.storm_job_threshold,
                 import_jobs=jobs)


def _audit_lease(connection: Connection, prefix: str) -> AuditLease:
    if connection.connection_string is not None:
        return TableAuditLease.from_connection_string(connection.connection_string, prefix=prefix)
    return TableAuditLease(identity_table_service(connection), prefix=prefix)


def build_audit(services: Services) -> AuditService:
    """The audit on the app's ports: remediation through ``services.engine.apply`` (the configured policy,
    the shared registry budget), hub reads paid from that same budget, every poison queue the app owns."""
    if services.audit_lease is None or services.audit_queue is None:
        raise SettingsError(HOST_STORAGE, "the audit needs storage for its lease and its request queue")
    ports = AuditPorts(
        dps=services.dps, registries=services.registries, journal=services.journal, reports=services.reports,
        suppressions=services.suppressions, poison_queues=services.poison_queues,
        hub_limiter=services.rate_limiter, apply=services.engine.apply,
        settings=AuditSettings.from_settings(services.settings))
    return AuditService(ports, services.audit_lease, services.audit_queue)


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    """The process's services, built from the environment on first use (thread-safe)."""
    global _services  # noqa: PLW0603 - one instance per worker process, on purpose
    with _lock:
        if _services is None:
            _services = build_services(Settings.from_env())
        return _services


def install_services(replacement: Services) -> None:
    """Use ``replacement`` from now on (tests wiring the app to an emulator and Azurite)."""
    global _services  # noqa: PLW0603
    with _lock:
        _services = replacement


def reset_services() -> None:
    """Forget the process's services; the next ``services()`` builds them again."""
    global _services  # noqa: PLW0603
    with _lock:
        _services = None
