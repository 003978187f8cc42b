"""``python -m devhost.stack up``: the whole product on 127.0.0.1 in one command.

Starts, in this order: Azurite (queue + table + blob, persisted under ``<state>/azurite`` so a restart keeps
the journal), the DPS + IoT Hub emulator in-process (``<state>/emulator``, persisted, 2 hubs, S1 throttling;
standard-ports mode when port 443 can be bound, so Microsoft's device SDKs probe the demo fleet:
:func:`start_stack_emulator`),
writes ``local.settings.json`` (sample + emulator + Azurite values; git-ignored, holds connection strings),
seeds the demo fleet once (``<state>/fleet/fleet.json`` is the marker), and runs the function app in the
local host (``devhost.host.Host``) on 127.0.0.1:7071. Ctrl-C / SIGTERM stop everything, Azurite's child
processes included. Installs nothing: ``make run`` runs ``make setup`` first. ``--demo`` then runs the
scripted demo (:mod:`devhost.demo_run`).

Nothing here prints a key or connection string, with one exception chosen on purpose: on an interactive
terminal the curl hint carries the function key (the developer needs it to call the HTTP route). When
stdout is not a terminal (CI, logs) the hint names the keys file instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from devhost import demo_fleet, node_device
from devhost.azurite import AzuriteError, AzuriteHandle, start_azurite
from devhost.demo_run import run_demo
from devhost.host import Host, HostOptions
from devhost.keys import keys_file, load_keys
from emulator.options import Options as EmulatorOptions
from emulator.server import Emulator

log = logging.getLogger("devhost.stack")
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SETTINGS = "local.settings.sample.json"


@dataclass(frozen=True)
class StackOptions:
    """The CLI flags of ``up``; ``settings_file`` None = ``<app-root>/local.settings.json``."""

    app_root: Path = REPO_ROOT
    state_dir: Path = REPO_ROOT / ".state"
    port: int = 7071
    settings_file: Path | None = None
    seed: bool = True
    tier: str = "S1"
    run_timers: bool = True
    ports: str = "auto"  # emulator port mode: auto | standard | default (start_stack_emulator)


def _say(text: str, *, err: bool = False) -> None:
    """Console output of the command (never a secret, except the documented curl hint)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _write_private_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")


def local_settings_values(sample: Path, existing: Path, emulator_config: dict[str, Any],
                          storage: str) -> dict[str, str]:
    """Sample values, then the developer's own edits, then what this run must set (ports change per run).

    The emulator/Azurite part is always rewritten: Azurite takes new ports on every start.
    """
    values: dict[str, str] = {}
    for path in (sample, existing):
        if path.is_file():
            values.update(json.loads(path.read_text(encoding="utf-8")).get("Values") or {})
    hubs = {hub["hostName"]: hub["connectionString"] for hub in emulator_config["hubs"]}
    values.update({
        "AzureWebJobsStorage": storage,
        "JOURNAL_CONNECTION": "",  # falls back to AzureWebJobsStorage
        "DPS_CONNECTION_STRING": emulator_config["dps"]["connectionString"],
        "IOTHUB_CONNECTIONS": json.dumps(hubs),
        "EMULATOR_CA_BUNDLE": emulator_config["caBundle"],
        "REQUESTS_CA_BUNDLE": emulator_config["caBundle"],
        "NO_PROXY": no_proxy(emulator_config),
    })
    values.update(servicebus_values(values, emulator_config))
    return values


SB_EVENT_QUEUE, SB_OUTCOME_QUEUE = "device-lifecycle", "device-lifecycle-outcomes"


def servicebus_values(values: dict[str, str], emulator_config: dict[str, Any]) -> dict[str, str]:
    """The Service Bus event source and the outcome queue on the emulator's stand-in (emulator/README.md,
    "Service Bus"; queues are created on first use). Queue names the developer set are kept."""
    block = emulator_config.get("serviceBus")
    if not block:
        return {}
    return {
        "SERVICEBUS_CONNECTION": block["connectionString"],
        "SERVICEBUS_QUEUE": values.get("SERVICEBUS_QUEUE") or SB_EVENT_QUEUE,
        "OUTCOME_SERVICEBUS_CONNECTION": block["connectionString"],
        "OUTCOME_QUEUE_OR_TOPIC": values.get("OUTCOME_QUEUE_OR_TOPIC") or SB_OUTCOME_QUEUE,
        "SERVICEBUS_CA_BUNDLE": block["caBundle"],  # the stand-in serves the emulator's certificate
    }


class PortModeError(RuntimeError):
    """``--ports standard`` asked for, and port 443 could not be bound."""


def start_stack_emulator(state_dir: Path, tier: str, ports: str = "auto") -> tuple[Emulator, dict[str, Any],
                                                                              str | None]:
    """The stack's emulator: (emulator, its config, a notice for the developer or None).

    ``standard``: DPS and each hub on port 443 of their own 127.x.y.z address, named without a port — what
    Microsoft's device SDKs need to dial them unchanged (``emulator/README.md``, "Device SDKs"); binding 443
    needs root or ``CAP_NET_BIND_SERVICE``. ``default``: free ports on 127.0.0.1. ``auto``: standard, and the
    default mode when port 443 cannot be bound, with a notice saying so.
    """
    if ports not in ("auto", "standard", "default"):
        raise ValueError(f"ports must be auto, standard or default, not {ports!r}")

    def start(standard: bool) -> tuple[Emulator, dict[str, Any]]:
        emulator = Emulator(EmulatorOptions(state_dir=state_dir, hubs=2, tier=tier, persist=True,
                                            dps_retry_after=0, standard_ports=standard))
        return emulator, emulator.start()

    if ports == "default":
        return (*start(False), None)
    try:
        return (*start(True), None)
    except OSError as exc:
        if ports == "standard":
            raise PortModeError(f"--ports standard: the emulator could not bind port 443 on a 127.x.y.z "
                                f"address ({exc})") from exc
        notice = (f"notice: the emulator could not bind port 443 on a 127.x.y.z address ({exc}); it runs on "
                  "free ports of 127.0.0.1 instead, so Microsoft's device SDKs cannot dial it and the demo's "
                  "device probes use the project's Python device client (run as root, or give Python "
                  "CAP_NET_BIND_SERVICE, for the standard-ports mode)")
        return (*start(False), notice)


def no_proxy(emulator_config: dict[str, Any]) -> str:
    """127.0.0.1, localhost and the emulator's own addresses (127.x.y.z in standard-ports mode)."""
    hosts = [emulator_config["dps"]["hostName"], *(hub["hostName"] for hub in emulator_config["hubs"])]
    return ",".join(dict.fromkeys(["127.0.0.1", "localhost", *(host.split(":")[0] for host in hosts)]))


def _shown_path(path: Path) -> str:
    """Relative to the working directory when inside it (shorter hints to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Stack:
    """Azurite + emulator + fleet + host, started together and stopped in reverse order."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.settings_file = (options.settings_file or options.app_root / "local.settings.json").resolve()
        self.azurite: AzuriteHandle | None = None
        self.emulator: Emulator | None = None
        self.host: Host | None = None
        self.config: dict[str, Any] = {}
        self.values: dict[str, str] = {}
        self.fleet: list[demo_fleet.FleetDevice] = []
        self.keys_file = keys_file(self.state_dir / "devhost")
        self.function_key = ""
        self.notices: list[str] = []
        self.device_sdk = "python"  # which device code seeds and probes the fleet (node_device.pick)

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.azurite = start_azurite(blob=True, location=self.state_dir / "azurite")
        self.emulator, self.config, notice = start_stack_emulator(self.state_dir / "emulator",
                                                                  self.options.tier, self.options.ports)
        if notice:
            self.notices.append(notice)  # shown in the banner
        self.device_sdk = node_device.pick(self.config)
        if self.device_sdk == "python" and notice is None:
            self.notices.append(f"notice: the demo's device probes use the project's Python device client: "
                                f"{node_device.why_not(self.config)}")
        # This process talks to the emulator too (seeding, probes); the app reads the same variables.
        os.environ["REQUESTS_CA_BUNDLE"] = self.config["caBundle"]
        os.environ["NO_PROXY"] = no_proxy(self.config)
        self.values = local_settings_values(self.options.app_root / SAMPLE_SETTINGS, self.settings_file,
                                            self.config, self.azurite.connection_string)
        _write_private_json(self.settings_file, {"IsEncrypted": False, "Values": self.values,
                                                 "Host": {"LocalHttpPort": self.options.port},
                                                 "ConnectionStrings": {}})
        if self.options.seed:
            self.fleet = demo_fleet.load_fleet(self.state_dir) or []
            hosts = {hub["hostName"] for hub in self.config["hubs"]}
            if any(device.hub not in hosts for device in self.fleet):
                # seeded when the hubs had other host names (the other port mode, or addresses taken):
                # DPS's assignedHub values and the fleet file point at endpoints that are gone
                _say("notice: the emulator's endpoints changed since the demo fleet was seeded: seeding a "
                     "fresh fleet")
                self.reseed()
            elif not self.fleet:
                self.fleet = demo_fleet.seed_fleet(self.config, self.state_dir, device_sdk=self.device_sdk)
        # Created quietly (the banner shows the function key itself); file keys only, as before: the host
        # reads the same file.
        self.function_key = load_keys(self.state_dir / "devhost", {}, announce=False).function_key
        self.host = Host(HostOptions(
            app_root=self.options.app_root, settings_file=self.settings_file, port=self.options.port,
            state_dir=self.state_dir / "devhost", dev_storage=self.azurite.connection_string,
            extra_settings=self.values, run_timers=self.options.run_timers)).start()

    def reseed(self) -> None:
        """Empty DPS and both hubs (admin reset), then seed a fresh fleet: used by a repeated demo."""
        import requests

        response = requests.post(f"{self.config['admin']}/reset", timeout=10, verify=self.config["caBundle"])
        response.raise_for_status()
        self.fleet = demo_fleet.seed_fleet(self.config, self.state_dir, device_sdk=self.device_sdk)

    def stop(self) -> None:
        """Host first (no new work), then the emulator (saves its state), then Azurite."""
        if self.host is not None:
            self.host.stop()
            self.host = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None

    # -- what to tell the developer -------------------------------------------------------------

    def _http_route(self) -> str:
        http = self.host.http if self.host else None
        for endpoint in http.endpoints if http else []:
            methods = endpoint.spec.methods or ("POST",)
            if "POST" in [m.upper() for m in methods] and "{" not in endpoint.spec.route:
                return f"{http.base_url}/{endpoint.spec.route}" if http else ""
        return f"http://127.0.0.1:{self.options.port}/api/unprovision"

    def _device_side(self) -> str:
        if self.device_sdk == "node":
            return ("registered and probed through Microsoft's Node.js device SDK (HTTPS; standard ports); "
                    "the TPM device through the Python device client (stand-in TPM header)")
        return "registered and probed through the project's Python device client (see the notice below)"

    def banner(self, *, interactive: bool) -> str:
        if self.azurite is None or self.host is None:
            raise RuntimeError("the stack is not running")
        dps = self.config["dps"]
        hubs = [f"  {hub['name']:<10} https://{hub['hostName']}" for hub in self.config["hubs"]]
        settings = _shown_path(self.settings_file)
        code = self.function_key if interactive else f"<functionKeys.default in {self.keys_file}>"
        lines = [
            "unprovision local stack is running (Ctrl-C stops everything)",
            (f"  Azurite    queue {self.azurite.queue_url}  table {self.azurite.table_url}  "
             f"blob {self.azurite.blob_url}  (data: {self.state_dir / 'azurite'})"),
            f"  DPS        https://{dps['hostName']}  ID scope {dps['idScope']}",
            *hubs,
            f"  settings   {self.settings_file} (connection strings: keep it private; git-ignored)",
            f"  fleet      {len(self.fleet)} demo devices (credentials under {self.state_dir / 'fleet'})",
            f"  devices    {self._device_side()}",
            *self.notices,
            "  functions:",
            *[f"    {line}" for line in self.host.describe()],
            "send an event (queue, then HTTP; the status route answers GET .../unprovision/<eventId>):",
            (f"  .venv/bin/python -m unprovision send --settings {settings} "
            "samples/events/lost-symmetric-group-member.json"),
            f"  .venv/bin/python -m unprovision status --settings {settings} evt-1003",
            f'  curl -s -X POST "{self._http_route()}?code={code}" -d @event.json',
            *self._servicebus_hint(settings),
        ]
        return "\n".join(lines)

    def _servicebus_hint(self, settings: str) -> list[str]:
        block = self.config.get("serviceBus")
        if not block:
            return []
        events, outcomes = self.values.get("SERVICEBUS_QUEUE"), self.values.get("OUTCOME_QUEUE_OR_TOPIC")
        return [
            (f"Service Bus (stand-in amqps://{block['hostName']}): events on queue {events}, "
             f"outcomes on queue {outcomes}"),
            (f"  .venv/bin/python -m unprovision send --servicebus --settings {settings} "
             "samples/events/lost-symmetric-group-member.json"),
            f"  .venv/bin/python -m unprovision outcomes --settings {settings} --wait 5",
        ]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost.stack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Azurite, the emulator, the demo fleet and the function app")
    up.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state")
    up.add_argument("--port", type=int, default=7071, help="HTTP port on 127.0.0.1 (0 = any free port)")
    up.add_argument("--app-root", type=Path, default=REPO_ROOT, help="directory holding function_app.py")
    up.add_argument("--settings", type=Path, default=None, help="default: <app-root>/local.settings.json")
    up.add_argument("--no-seed", action="store_true", help="do not create the demo fleet")
    up.add_argument("--tier", default="S1", help="emulated hub tier for throttling (S1|S2|S3|F1|off)")
    up.add_argument("--demo", action="store_true", help="run the scripted demo after start-up")
    up.add_argument("--exit", action="store_true", help="with --demo: stop after the demo")
    up.add_argument("--no-timers", action="store_true", help="do not run the audit timer")
    up.add_argument("--ports", choices=("auto", "standard", "default"), default="auto",
                    help="emulator: 443 on 127.x.y.z (standard), free ports (default), or standard falling "
                         "back to default when 443 cannot be bound (auto, the default)")
    up.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # SDK request logs would show SAS query strings
    for signum in (signal.SIGTERM, signal.SIGINT):  # both unwind like Ctrl-C (also when SIGINT was ignored)
        signal.signal(signum, _raise_interrupt)
    if args.exit and not args.demo:
        _say("--exit only makes sense with --demo", err=True)
        return 2
    stack = Stack(StackOptions(app_root=args.app_root.resolve(), state_dir=args.state_dir, port=args.port,
                               settings_file=args.settings, seed=not args.no_seed or args.demo,
                               tier=args.tier, run_timers=not args.no_timers, ports=args.ports))
    code = 0
    try:
        stack.start()
        _say(stack.banner(interactive=sys.stdout.isatty()))
        if args.demo:
            code = run_demo(stack)
        if not args.exit:
            signal.pause()
    except KeyboardInterrupt:
        _say("stopping …")
    except (AzuriteError, PortModeError) as exc:  # AzuriteError: `make setup` has not installed Azurite
        _say(f"error: {exc}", err=True)
        code = 1
    finally:
        stack.stop()
    _say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
