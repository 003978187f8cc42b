"""The local Functions host: settings, indexing, and the queue / HTTP / timer / Service Bus listeners.

``Host(HostOptions(...)).start()`` does what the Functions host does at start-up
(docs/azure-behaviour.md §F11): load local.settings.json ``Values`` into the environment without overriding
existing variables, read host.json, import and index the app once, then start a listener for every function
the app registered. ``stop()`` stops them all and removes the environment variables it added.

Output bindings are flushed after a successful invocation: ``queue`` (base64, and the pump of that queue is
woken), ``table`` (upsert of one entity or a list), ``serviceBus`` (sent with the SDK). Not pinned
by a documented source: identity-based storage connections (``<name>__queueServiceUri`` …) are mapped to
Azurite, since nothing can reach Azure from here.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost import app_index
from devhost.app_index import AppIndex, FunctionInfo, InvocationResult, OutputBinding, TriggerKind
from devhost.http_server import HttpFrontEnd
from devhost.keys import KeyStore, load_keys
from devhost.queue_pump import QueuePump, queue_client_factory, send_creating
from devhost.servicebus import AzureServiceBusReceiver, MessageReceiver, ServiceBusPump, send_output
from devhost.settings import (
    HostConfig,
    development_storage,
    has_identity_group,
    load_local_settings,
    merge_into_environ,
    read_host_json,
    resolve_connection,
)
from devhost.timers import TimerRunner

log = logging.getLogger("devhost")


@dataclass(frozen=True)
class HostOptions:
    """How to run the host. ``port=0`` picks a free port."""

    app_root: Path = Path()
    settings_file: Path | None = None  # default: <app_root>/local.settings.json
    host: str = "127.0.0.1"
    port: int = 7071
    state_dir: Path | None = None  # default: <app_root>/.state/devhost (keys.json)
    extra_settings: Mapping[str, str] = field(default_factory=dict)
    dev_storage: str | None = None  # explicit Azurite connection string behind UseDevelopmentStorage=true
    run_timers: bool = True
    serve_http: bool = True
    module_name: str | None = None  # import the app under this name (tests hosting a toy app in-process)


class Host:
    """Programmatic host for tests and ``python -m devhost``."""

    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.app_root = options.app_root.resolve()
        self.index: AppIndex | None = None
        self.config: HostConfig | None = None
        self.keys: KeyStore | None = None
        self.http: HttpFrontEnd | None = None
        self.queue_pumps: dict[str, QueuePump] = {}
        self.timers: dict[str, TimerRunner] = {}
        self.sb_pumps: dict[str, ServiceBusPump] = {}
        self.settings: dict[str, str] = {}
        self._connection_strings: dict[str, str] = {}
        self._added_env: list[str] = []
        self._invoke = functools.partial(_invoke, app_root=self.app_root)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Host:
        """Load settings, index the app, start every listener; returns self."""
        values, self._connection_strings = load_local_settings(
            self.options.settings_file or self.app_root / "local.settings.json"
        )
        self._added_env = merge_into_environ({**values, **self.options.extra_settings}, os.environ)
        self.settings = dict(os.environ)
        self.config = read_host_json(self.app_root, self.settings)
        self.index = app_index.load_app(self.app_root, self.settings, module_name=self.options.module_name)
        try:
            self._start_queues(self.index, self.config)
            self._start_service_bus(self.index, self.config)
            self._start_timers(self.index)
            self._start_http(self.index, self.config)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop HTTP first (no new work), then pumps and timers; remove the environment variables we added."""
        if self.http:
            self.http.stop()
            self.http = None
        runners: list[QueuePump | ServiceBusPump | TimerRunner] = [
            *self.queue_pumps.values(), *self.sb_pumps.values(), *self.timers.values()
        ]
        for runner in runners:
            runner.stop()
        self.queue_pumps.clear()
        self.sb_pumps.clear()
        self.timers.clear()
        for name in self._added_env:
            os.environ.pop(name, None)
        self._added_env = []

    def __enter__(self) -> Host:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- listeners ---------------------------------------------------------------------------------

    def _storage_connection(self, name: str) -> str:
        conn = resolve_connection(
            name,
            self.settings,
            connection_strings=self._connection_strings,
            dev_storage=self.options.dev_storage,
        )
        if conn is None:
            base = name or "AzureWebJobsStorage"
            how = (
                "identity-based settings, mapped to Azurite"
                if has_identity_group(base, self.settings)
                else None
            )
            if how is None:
                raise app_index.AppIndexError(
                    f"storage connection {base!r} is not configured", code="MissingConnection"
                )
            log.warning("connection %s uses %s", base, how)
            conn = self.options.dev_storage or development_storage()
        return conn

    def _start_queues(self, index: AppIndex, config: HostConfig) -> None:
        for info in index.by_kind(TriggerKind.QUEUE):
            connection = info.spec.connection if isinstance(info.spec, app_index.QueueSpec) else ""
            clients = queue_client_factory(self._storage_connection(connection))
            pump = QueuePump(info, clients, config.queues, self._invoke, self._flush_outputs)
            self.queue_pumps[info.name] = pump
            pump.start()

    def _receiver_for(self, info: FunctionInfo, spec: app_index.ServiceBusSpec,
                      config: HostConfig) -> MessageReceiver | None:
        conn = resolve_connection(spec.connection, self.settings, connection_strings=self._connection_strings)
        if not conn:
            log.warning("Service Bus function %s skipped: %s is not set", info.name, spec.connection)
            return None
        return AzureServiceBusReceiver(conn, spec.entity, config.service_bus)

    def _start_service_bus(self, index: AppIndex, config: HostConfig) -> None:
        for info in index.by_kind(TriggerKind.SERVICE_BUS):
            spec = info.spec
            is_sb = isinstance(spec, app_index.ServiceBusSpec)
            receiver = self._receiver_for(info, spec, config) if is_sb else None
            if receiver is None:
                continue
            pump = ServiceBusPump(
                info,
                receiver,
                self._invoke,
                on_result=self._flush_outputs,
                max_concurrent_calls=config.service_bus.max_concurrent_calls,
                auto_complete=config.service_bus.auto_complete_messages,
            )
            self.sb_pumps[info.name] = pump
            pump.start()

    def _start_timers(self, index: AppIndex) -> None:
        for info in index.by_kind(TriggerKind.TIMER):
            runner = TimerRunner(info, self._invoke, self._flush_outputs)
            self.timers[info.name] = runner
            if self.options.run_timers:
                runner.start()

    def _start_http(self, index: AppIndex, config: HostConfig) -> None:
        functions = index.by_kind(TriggerKind.HTTP)
        if not (functions and self.options.serve_http):
            return
        self.keys = load_keys(self.options.state_dir or self.app_root / ".state" / "devhost", self.settings)
        self.http = HttpFrontEnd(
            functions,
            self.keys,
            self._invoke,
            route_prefix=config.route_prefix,
            host=self.options.host,
            port=self.options.port,
            on_result=self._flush_outputs,
            admin_runner=self.run_function,
        )
        self.http.start()

    # -- operations --------------------------------------------------------------------------------

    def fire_timer(self, name: str, past_due: bool = False) -> bool:
        """Run a timer function now; False when it raised."""
        return self.timers[name].fire_now(past_due)

    def run_function(self, name: str, text: str) -> bool:
        """Admin "run now": a timer fires, a queue function gets ``text`` enqueued; False if unknown."""
        if name in self.timers:
            self.fire_timer(name)
            return True
        pump = self.queue_pumps.get(name)
        if pump is not None:
            self._send_queue(pump.connection, pump.queue_name, text)
            return True
        return False

    def describe(self) -> list[str]:
        """One line per running listener, without connection strings or keys."""
        lines = [f"{n}: queue {p.queue_name}" for n, p in self.queue_pumps.items()]
        lines += [f"{n}: timer '{t.spec.schedule}'" for n, t in self.timers.items()]
        lines += [f"{n}: Service Bus {p.entity}" for n, p in self.sb_pumps.items()]
        if self.http:
            for endpoint in self.http.endpoints:
                methods = ",".join(endpoint.spec.methods or ("*",))
                lines.append(
                    f"{endpoint.info.name}: HTTP {methods} {self.http.base_url}/{endpoint.spec.route} "
                    f"[{endpoint.spec.auth_level}]"
                )
        return lines

    # -- output bindings ---------------------------------------------------------------------------

    def _flush_outputs(self, info: FunctionInfo, result: InvocationResult) -> None:
        for binding in info.outputs:
            value = result.return_value if binding.name == "$return" else result.outputs.get(binding.name)
            if value is None or binding.type == "http":
                continue
            self._flush_one(binding, value)

    def _flush_one(self, binding: OutputBinding, value: Any) -> None:
        attrs = binding.attributes
        items = value if isinstance(value, list) else [value]
        if binding.type == "queue":
            for item in items:
                self._send_queue(str(attrs.get("connection", "")), str(attrs["queueName"]), item)
        elif binding.type == "table":
            self._upsert_table(str(attrs.get("connection", "")), str(attrs["tableName"]), value)
        elif binding.type == "serviceBus":
            conn = resolve_connection(str(attrs.get("connection", "")), self.settings,
                                      connection_strings=self._connection_strings)
            if conn is None:
                raise app_index.AppIndexError(
                    f"Service Bus connection {attrs.get('connection')!r} is not configured",
                    code="MissingConnection")
            topic = attrs.get("topicName")
            send_output(conn, str(topic or attrs.get("queueName")), items, topic=bool(topic))
        else:
            log.warning(
                "output binding %s of type %s is not supported by devhost; value dropped",
                binding.name,
                binding.type,
            )

    def _send_queue(self, connection: str, queue_name: str, item: Any) -> None:
        data = (
            item
            if isinstance(item, bytes)
            else (item if isinstance(item, str) else json.dumps(item)).encode()
        )
        client = queue_client_factory(self._storage_connection(connection))(queue_name)
        encoded = (
            base64.b64encode(data).decode()
            if self.config and self.config.queues.message_encoding == "base64"
            else data.decode()
        )
        send_creating(client, encoded)
        for pump in self.queue_pumps.values():
            if pump.queue_name == queue_name:
                pump.notify()

    def _upsert_table(self, connection: str, table_name: str, value: Any) -> None:
        from azure.data.tables import TableServiceClient

        entities = json.loads(value) if isinstance(value, str | bytes) else value
        service = TableServiceClient.from_connection_string(self._storage_connection(connection))
        table = service.create_table_if_not_exists(table_name)
        for entity in entities if isinstance(entities, list) else [entities]:
            table.upsert_entity(entity)


def _invoke(info: FunctionInfo, trigger_value: Any, *, app_root: Path) -> InvocationResult:
    return app_index.invoke(info, trigger_value, app_root)
