"""The emulator process: one HTTPS listener per service (DPS + admin on one, each hub on its own),
start()/stop() for in-process use, and ``emulator.json`` written once everything listens.

Default mode: everything on ``host`` (127.0.0.1); DPS uses ``port`` (0 = any free port), hubs take free
ports; host names are ``127.0.0.1:PORT``. With ``persist`` the previous ports are reused when free, so
``assignedHub`` values recorded by DPS still point at the right hub.

Standard-ports mode (``standard_ports``): DPS and each hub listen on port 443 of their own loopback address
``127.A.B.n`` (A.B random, re-drawn when any address is taken, so concurrent runs do not collide); host
names are bare addresses, as real endpoints are named without a port. With ``persist`` the previous
addresses are tried first.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
from pathlib import Path
from typing import Any

from emulator import persist
from emulator.admin import AdminService
from emulator.dps import DpsService, DpsState
from emulator.http import ServiceError
from emulator.iothub.routes import HubService
from emulator.iothub.state import HubState
from emulator.knobs import Knobs
from emulator.options import Options
from emulator.tls import TlsFiles, ensure_tls, server_context
from emulator.wire import Dispatcher, TlsHttpServer

CONFIG_FILE = "emulator.json"
DPS_POLICY = "provisioningserviceowner"
HUB_POLICY = "iothubowner"
STANDARD_PORT = 443
_ADDRESS_TRIES = 30


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
        self.dps_service: DpsService | None = None
        self._servers: list[TlsHttpServer] = []
        self._threads: list[threading.Thread] = []
        self._saver: persist.AutoSaver | None = None
        self._save_lock = threading.Lock()
        self._secrets: dict[str, Any] = {}

    # ---- life cycle ---------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        opts = self.options
        previous = persist.load(self.state_dir) if opts.persist else None
        self._secrets = self._load_secrets(previous)
        self.hubs = [HubState(f"hub-{i + 1}") for i in range(opts.hubs)]
        if previous:
            self._restore(previous)
        dps_service = DpsService(self.dps_state, self.hubs, self._secrets["idScope"],
                                 {DPS_POLICY: self._secrets["dpsKey"]}, retry_after=opts.dps_retry_after)
        self.dps_service = dps_service
        dispatchers = [Dispatcher(dps_service, self.knobs, AdminService(self), on_mutation=self._mutated)]
        for index, hub in enumerate(self.hubs):
            service = HubService(hub, {HUB_POLICY: self._secrets["hubKeys"][index]}, self.knobs)
            dispatchers.append(Dispatcher(service, self.knobs, on_mutation=self._mutated))
        if opts.standard_ports:
            self._bind_standard(dispatchers, (previous or {}).get("addresses"))
            names = [str(server.server_address[0]) for server in self._servers]
        else:
            self._bind_ports(dispatchers, previous)
            names = [f"{opts.host}:{server.server_address[1]}" for server in self._servers]
        tls = ensure_tls(self.state_dir, [str(server.server_address[0]) for server in self._servers])
        context = server_context(tls)
        for server in self._servers:
            server.context = context
        for hub, name in zip(self.hubs, names[1:], strict=True):
            hub.host_name = name
        self.knobs.update(opts.knob_defaults(), [h.name for h in self.hubs])
        self.config = self._describe(tls, names[0])
        from emulator.servicebus import ServiceBusStandIn  # Service Bus stand-in (emulator/README.md)
        self.servicebus = ServiceBusStandIn(
            tls, key_file=self.state_dir / "servicebus-key.json" if opts.persist else None)
        self.config["serviceBus"] = self.servicebus.start()
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
        if getattr(self, "servicebus", None) is not None:
            self.servicebus.stop()
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

    def _bind_ports(self, dispatchers: list[Dispatcher], previous: dict[str, Any] | None) -> None:
        """Default mode: DPS on ``port`` (or its previous port), hubs on free (or previous) ports. Previous
        ports of a standard-ports run (443 on other addresses) are not reused; a previous port that turns out
        taken falls back to a free one."""
        if previous and previous.get("addresses"):
            previous = None
        old_hubs = (previous or {}).get("hubs") or []
        ports = [self._pick_port(self.options.port, (previous or {}).get("dpsPort"))]
        ports += [self._pick_port(0, old_hubs[i].get("port") if i < len(old_hubs) else None)
                  for i in range(len(dispatchers) - 1)]
        for index, (port, dispatcher) in enumerate(zip(ports, dispatchers, strict=True)):
            try:
                server = TlsHttpServer((self.options.host, port), dispatcher, None)
            except OSError:
                if port == 0 or (index == 0 and self.options.port):
                    raise
                server = TlsHttpServer((self.options.host, 0), dispatcher, None)
            self._servers.append(server)

    def _bind_standard(self, dispatchers: list[Dispatcher], previous: list[str] | None) -> None:
        """Standard-ports mode: port 443 on ``127.A.B.1`` (DPS), ``127.A.B.2`` … (hubs)."""
        count = len(dispatchers)
        candidates: list[list[str]] = [previous] if previous and len(previous) == count else []
        rng = random.SystemRandom()
        blocks = ((rng.randint(1, 254), rng.randint(0, 255)) for _ in range(_ADDRESS_TRIES))
        candidates += [[f"127.{a}.{b}.{n + 1}" for n in range(count)] for a, b in blocks]
        for addresses in candidates:
            try:
                for address, dispatcher in zip(addresses, dispatchers, strict=True):
                    self._servers.append(TlsHttpServer((address, STANDARD_PORT), dispatcher, None))
            except OSError:
                for server in self._servers:
                    server.server_close()
                self._servers.clear()
            else:
                return
        raise OSError(f"no free loopback address block for port {STANDARD_PORT} (root is needed to bind it)")

    def _describe(self, tls: TlsFiles, host: str) -> dict[str, Any]:
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
        if getattr(self, "servicebus", None) is not None:
            self.servicebus.reset()
        if self.dps_service is not None:
            self.registration_flow({"retryAfter": self.options.dps_retry_after, "assigningPolls": 0})
        self._mutated()

    def update_knobs(self, data: dict[str, Any]) -> None:
        self.knobs.update(data, [h.name for h in self.hubs])

    def registration_flow(self, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read or change the device registration flow: ``retryAfter`` (seconds sent with 202) and
        ``assigningPolls`` (polls answered 202 ``assigning`` before the final state)."""
        assert self.dps_service is not None  # noqa: S101 - started
        device = self.dps_service.device
        unknown = set(data or {}) - {"retryAfter", "assigningPolls"}
        if unknown:
            raise ServiceError(400, "BadRequest", f"Unknown settings: {sorted(unknown)}.")
        if data and "retryAfter" in data:
            device.retry_after = max(0.0, float(data["retryAfter"]))
        if data and "assigningPolls" in data:
            device.assigning_polls = max(0, int(data["assigningPolls"]))
        return {"retryAfter": device.retry_after, "assigningPolls": device.assigning_polls}

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
            addresses = [server.server_address for server in self._servers]
            snapshot = {**self._secrets, "dpsPort": addresses[0][1], "dps": self.dps_state.to_dict(),
                        "hubs": [{"name": h.name, "port": address[1], "state": h.to_dict()}
                                 for h, address in zip(self.hubs, addresses[1:], strict=False)]}
            if self.options.standard_ports:
                snapshot["addresses"] = [address[0] for address in addresses]
            return str(persist.save(self.state_dir, snapshot))
