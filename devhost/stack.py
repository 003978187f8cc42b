"""``python -m devhost.stack up``: the whole product on 127.0.0.1 in one command.

Starts, in this order: Azurite (queue + table + blob, persisted under ``<state>/azurite`` so a restart keeps
the journal), the DPS + IoT Hub emulator in-process (``<state>/emulator``, persisted, 2 hubs, S1 throttling),
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

from devhost import demo_fleet
from devhost.azurite import AzuriteError, AzuriteHandle, start_azurite
from devhost.demo_run import run_demo
from devhost.host import Host, HostOptions
from devhost.keys import keys_file, load_keys
from emulator.server import Emulator
from emulator.server import Options as EmulatorOptions

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
        "NO_PROXY": "127.0.0.1,localhost",
    })
    return values


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

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.azurite = start_azurite(blob=True, location=self.state_dir / "azurite")
        self.emulator = Emulator(EmulatorOptions(state_dir=self.state_dir / "emulator", hubs=2,
                                                 tier=self.options.tier, persist=True, dps_retry_after=0))
        self.config = self.emulator.start()
        # This process talks to the emulator too (seeding, probes); the app reads the same variables.
        os.environ["REQUESTS_CA_BUNDLE"] = self.config["caBundle"]
        os.environ["NO_PROXY"] = "127.0.0.1,localhost"
        self.values = local_settings_values(self.options.app_root / SAMPLE_SETTINGS, self.settings_file,
                                            self.config, self.azurite.connection_string)
        _write_private_json(self.settings_file, {"IsEncrypted": False, "Values": self.values,
                                                 "Host": {"LocalHttpPort": self.options.port},
                                                 "ConnectionStrings": {}})
        if self.options.seed:
            self.fleet = demo_fleet.load_fleet(self.state_dir) or demo_fleet.seed_fleet(self.config,
                                                                                       self.state_dir)
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
        self.fleet = demo_fleet.seed_fleet(self.config, self.state_dir)

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
            "  functions:",
            *[f"    {line}" for line in self.host.describe()],
            "send an event (queue, then HTTP; the status route answers GET .../unprovision/<eventId>):",
            (f"  .venv/bin/python -m unprovision send --settings {settings} "
            "samples/events/lost-symmetric-group-member.json"),
            f"  .venv/bin/python -m unprovision status --settings {settings} evt-1003",
            f'  curl -s -X POST "{self._http_route()}?code={code}" -d @event.json',
        ]
        return "\n".join(lines)


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
                               tier=args.tier, run_timers=not args.no_timers))
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
    except AzuriteError as exc:  # the usual first-run problem: `make setup` has not installed Azurite
        _say(f"error: {exc}", err=True)
        code = 1
    finally:
        stack.stop()
    _say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
