"""The emulator process: one HTTPS listener per service on 127.0.0.1 (DPS + admin on one port, each hub on
its own port), start()/stop() for in-process use, and ``emulator.json`` written once everything listens.

Ports: DPS uses ``port`` (0 = any free port); hubs take free ports. With ``persist`` the previous ports
are reused when free, so ``assignedHub`` values recorded by DPS still point at the right hub.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator import persist
from emulator.admin import AdminService
from emulator.dps import DpsService, DpsState
from emulator.http import ServiceError
from emulator.iothub.routes import HubService
from emulator.iothub.state import HubState
from emulator.knobs import Knobs
from emulator.tls import TlsFiles, ensure_tls, server_context
from emulator.wire import Dispatcher, TlsHttpServer

CONFIG_FILE = "emulator.json"
DPS_POLICY = "provisioningserviceowner"
HUB_POLICY = "iothubowner"


@dataclass(frozen=True)
class Options:
    """Start-up settings (the CLI flags of ``python -m emulator``)."""

    state_dir: Path
    hubs: int = 2
    host: str = "127.0.0.1"
    port: int = 0
    tier: str = "S1"
    units: int = 1
    time_compression: float = 1.0
    latency_ms: float = 0.0
    persist: bool = False
    dps_throttle: bool = True

    def knob_defaults(self) -> dict[str, Any]:
        return {"tier": self.tier, "units": self.units, "timeCompression": self.time_compression,
                "latencyMs": self.latency_ms, "jitterMs": 0.0, "dpsThrottle": self.dps_throttle}


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _cs(host: str, policy: str, key: str) -> str:
    return f"HostName={host};SharedAccessKeyName={policy};SharedAccessKey={key}"


class Emulator:
    """DPS + IoT Hub emulator. ``start()`` returns the emulator.json dict; ``stop()`` closes everything."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.state_dir = Path(options.state_dir).resolve()
        self.knobs = Knobs()
        self.config: dict[str, Any] = {}
        self.hubs: list[HubState] = []
        self.dps_state = DpsState()
        self._servers: list[TlsHttpServer] = []
        self._threads: list[threading.Thread] = []
        self._saver: persist.AutoSaver | None = None
        self._save_lock = threading.Lock()
        self._secrets: dict[str, Any] = {}

    # ---- life cycle ---------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        opts = self.options
        tls = ensure_tls(self.state_dir)
        previous = persist.load(self.state_dir) if opts.persist else None
        self._secrets = self._load_secrets(previous)
        self.hubs = [HubState(f"hub-{i + 1}") for i in range(opts.hubs)]
        if previous:
            self._restore(previous)
        dps_service = DpsService(self.dps_state, self.hubs, self._secrets["idScope"],
                                 {DPS_POLICY: self._secrets["dpsKey"]})
        dps_port = self._pick_port(opts.port, (previous or {}).get("dpsPort"))
        dps_server = self._listen(dps_port, Dispatcher(dps_service, self.knobs, AdminService(self)), tls)
        hub_servers = []
        for index, hub in enumerate(self.hubs):
            old_hubs = (previous or {}).get("hubs") or []
            port = self._pick_port(0, old_hubs[index].get("port") if index < len(old_hubs) else None)
            service = HubService(hub, {HUB_POLICY: self._secrets["hubKeys"][index]})
            server = self._listen(port, Dispatcher(service, self.knobs, on_mutation=self._mutated), tls)
            hub.host_name = f"{opts.host}:{server.server_address[1]}"
            hub_servers.append(server)
        dps_server.dispatcher.on_mutation = self._mutated
        self.knobs.update(opts.knob_defaults(), [h.name for h in self.hubs])
        self.config = self._describe(tls, dps_server.server_address[1])
        for server in self._servers:
            name = f"emulator-{server.server_address[1]}"
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if opts.persist:
            self._saver = persist.AutoSaver(self.save)
            self._saver.start()
            self.save()
        self._write_config()
        return self.config

    def stop(self) -> None:
        """Save (with persist), stop listening, cut open connections, remove emulator.json."""
        if self._saver is not None:
            self._saver.stop()
            self.save()
            self._saver = None
        for server in self._servers:
            server.close_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
        (self.state_dir / CONFIG_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- helpers for start ----------------------------------------------------------------------
    def _load_secrets(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        if previous and len(previous.get("hubKeys", [])) >= self.options.hubs:
            return {k: previous[k] for k in ("idScope", "dpsKey", "hubKeys")}
        return {"idScope": "0ne" + secrets.token_hex(4).upper(), "dpsKey": _key(),
                "hubKeys": [_key() for _ in range(self.options.hubs)]}

    def _restore(self, previous: dict[str, Any]) -> None:
        self.dps_state = DpsState.from_dict(previous.get("dps") or {})
        for hub, saved in zip(self.hubs, previous.get("hubs") or [], strict=False):
            hub.load_dict(saved.get("state") or {})

    def _pick_port(self, requested: int, previous: int | None) -> int:
        if requested:
            return requested
        return previous if previous and persist.port_free(self.options.host, previous) else 0

    def _listen(self, port: int, dispatcher: Dispatcher, tls: TlsFiles) -> TlsHttpServer:
        server = TlsHttpServer((self.options.host, port), dispatcher, server_context(tls))
        self._servers.append(server)
        return server

    def _describe(self, tls: TlsFiles, dps_port: int) -> dict[str, Any]:
        host = f"{self.options.host}:{dps_port}"
        return {
            "caBundle": str(tls.ca_cert),
            "dps": {"hostName": host, "connectionString": _cs(host, DPS_POLICY, self._secrets["dpsKey"]),
                    "idScope": self._secrets["idScope"], "deviceEndpoint": f"https://{host}"},
            "hubs": [{"name": hub.name, "hostName": hub.host_name,
                      "connectionString": _cs(hub.host_name, HUB_POLICY, key)}
                     for hub, key in zip(self.hubs, self._secrets["hubKeys"], strict=False)],
            "admin": f"https://{host}/_emulator",
        }

    def _write_config(self) -> None:
        path = self.state_dir / CONFIG_FILE
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        temp.chmod(0o600)
        temp.replace(path)

    def _mutated(self) -> None:
        if self._saver is not None:
            self._saver.mark()

    # ---- admin operations -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty DPS and every hub; knobs back to the start-up settings; counters cleared."""
        self.dps_state.clear()
        for hub in self.hubs:
            hub.reset()
        self.knobs.reset([h.name for h in self.hubs], self.options.knob_defaults())
        self._mutated()

    def update_knobs(self, data: dict[str, Any]) -> None:
        self.knobs.update(data, [h.name for h in self.hubs])

    def dump(self) -> dict[str, Any]:
        return {"dps": self.dps_state.to_dict(), "hubs": [hub.to_dict() for hub in self.hubs],
                "knobs": self.knobs.settings()}

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Bulk seeding: ``enrollments`` (individual + groups), ``registrations`` (``assignedHub`` may be a
        hub name such as ``hub-1``), ``devices`` ({hub name: [Device]} or [Device + ``hub``])."""
        by_name = {hub.name: hub for hub in self.hubs}
        registrations = [
            {**item, "assignedHub": by_name[item["assignedHub"]].host_name}
            if isinstance(item, dict) and item.get("assignedHub") in by_name else item
            for item in body.get("registrations") or []
        ]
        counts = {"enrollments": self.dps_state.seed_enrollments(list(body.get("enrollments") or [])),
                  "registrations": self.dps_state.seed_registrations(registrations), "devices": {}}
        devices = body.get("devices") or {}
        if isinstance(devices, list):
            grouped: dict[str, list[dict[str, Any]]] = {}
            for item in devices:
                grouped.setdefault(item.get("hub") or self.hubs[0].name, []).append(item)
            devices = grouped
        for name, items in devices.items():
            if name not in by_name:
                raise ServiceError(400, "BadRequest", f"Unknown hub {name!r}.")
            counts["devices"][name] = by_name[name].seed_devices(items)
        self._mutated()
        return counts

    def save(self) -> str | None:
        """Write the snapshot now (only with ``persist``); returns its path."""
        if not self.options.persist:
            return None
        with self._save_lock:
            snapshot = {**self._secrets, "dpsPort": int(self.config["dps"]["hostName"].rsplit(":", 1)[1]),
                        "dps": self.dps_state.to_dict(),
                        "hubs": [{"name": h.name, "port": int(h.host_name.rsplit(":", 1)[1]),
                                  "state": h.to_dict()} for h in self.hubs]}
            return str(persist.save(self.state_dir, snapshot))
