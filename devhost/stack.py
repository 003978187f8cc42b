"""``python -m devhost.stack up``: the whole product on 127.0.0.1 in one command.

Starts, in this order: Azurite (queue + table + blob, persisted under ``<state>/azurite`` so a restart keeps
the journal), the DPS + IoT Hub emulator in-process (``<state>/emulator``, persisted, 2 hubs, S1 throttling),
writes ``local.settings.json`` (sample + emulator + Azurite values; git-ignored, holds connection strings),
seeds the demo fleet once (``<state>/fleet/fleet.json`` is the marker), and runs the function app in the
local host (``devhost.host.Host``) on 127.0.0.1:7071. Ctrl-C / SIGTERM stop everything, Azurite's child
processes included. Installs nothing: ``make run`` runs ``make setup`` first.

Nothing here prints a key or connection string, with one exception chosen on purpose: on an interactive
terminal the curl hint carries the function key (the developer needs it to call the HTTP route). When
stdout is not a terminal (CI, logs) the hint names the keys file instead.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devhost import demo_fleet
from devhost.azurite import AzuriteError, AzuriteHandle, start_azurite
from devhost.host import Host, HostOptions
from devhost.keys import KEYS_FILE
from emulator.server import Emulator
from emulator.server import Options as EmulatorOptions
from shared.adapters.journal_tables import TableJournal

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


def ensure_keys(state_dir: Path) -> tuple[Path, str]:
    """Create ``keys.json`` quietly (devhost would print both keys); returns its path and the function key."""
    path = state_dir / KEYS_FILE
    try:
        return path, str(json.loads(path.read_text(encoding="utf-8"))["functionKeys"]["default"])
    except (OSError, ValueError, KeyError, TypeError):
        function_key = secrets.token_urlsafe(32)
        doc = {"masterKey": secrets.token_urlsafe(32), "functionKeys": {"default": function_key}}
        _write_private_json(path, doc)
        return path, function_key


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
        self.keys_file = self.state_dir / "devhost" / KEYS_FILE
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
                                                 tier=self.options.tier, persist=True))
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
        self.keys_file, self.function_key = ensure_keys(self.state_dir / "devhost")
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


# -- the demo -------------------------------------------------------------------------------------

DEMO_TIMEOUT_S = 90.0
_FINISHED = ("completed", "failed", "refused", "rejected")


def _event(run: str, number: int, kind: str, **fields: Any) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"eventId": f"demo-{run}-{number:02d}-{kind}", "type": kind, "occurredAt": now,
            "source": "devhost-demo", **fields}


def demo_script(run: str, state_dir: Path) -> list[list[dict[str, Any]]]:
    """Two phases: revocations first; then ``found`` (needs the completed ``lost``) and a group event."""
    leaf = demo_fleet.leaf_pem(state_dir, "sensor-a-001")
    first = [
        _event(run, 1, "lost", registrationId="sensor-a-001", certificate=leaf, note="demo: lost on site A"),
        _event(run, 2, "stolen", registrationId="gateway-tpm-004"),
        _event(run, 3, "sold", registrationId="camera-x509-005"),
        _event(run, 4, "moved", registrationId="kiosk-sk-006"),
        _event(run, 5, "lost", registrationId="thermo-sk-003"),
        _event(run, 6, "lost", registrationId="tracker-007"),
    ]
    second = [_event(run, 7, "found", registrationId="tracker-007"),
              _event(run, 8, "compromised", enrollmentGroupId="line-a")]
    return [first, second]


MALFORMED = {"eventId": "", "type": "misplaced", "registrationID": "sensor-a-001", "occurredAt": "yesterday",
             "source": "devhost-demo"}


def _wait(journal: TableJournal, event_ids: list[str], deadline: float) -> dict[str, str]:
    """Poll the journal until every event has finished (or the deadline passes); eventId -> status."""
    status = dict.fromkeys(event_ids, "not seen")
    while time.monotonic() < deadline:
        for event_id in event_ids:
            if status[event_id] not in _FINISHED:
                record = journal.get(event_id)
                status[event_id] = record.status if record else "not seen"
        if all(value in _FINISHED for value in status.values()):
            break
        time.sleep(0.5)
    return status


def run_demo(stack: Stack) -> int:
    """Before table, scripted events through the lifecycle queue, after table; 0 when all completed."""
    marker = stack.state_dir / "demo" / "ran"
    if marker.exists():
        _say("demo ran before in this state dir: re-seeding a fresh fleet")
        stack.reseed()
    probe = demo_fleet.FleetProbe(stack.config, stack.state_dir)
    _say("\nfleet BEFORE the events:\n" + demo_fleet.format_table(probe.table(stack.fleet)))
    storage = stack.values["AzureWebJobsStorage"]
    prefix = stack.values.get("JOURNAL_TABLE_PREFIX", "")
    journal = TableJournal.from_connection_string(storage, prefix=prefix)
    queue_name = stack.values.get("LIFECYCLE_QUEUE") or "device-lifecycle"
    queue = QueueClient.from_connection_string(storage, queue_name)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    rejected_before = sum(1 for _ in journal.iter_rejections())
    run = time.strftime("%H%M%S") + secrets.token_hex(2)
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    results: dict[str, tuple[dict[str, Any], str]] = {}
    for phase in demo_script(run, stack.state_dir):
        for event in phase:
            body = json.dumps(event)
            (stack.state_dir / "demo" / f"{event['eventId']}.json").parent.mkdir(parents=True, exist_ok=True)
            (stack.state_dir / "demo" / f"{event['eventId']}.json").write_text(body, encoding="utf-8")
            queue.send_message(base64.b64encode(body.encode()).decode())
            _say(f"sent {event['type']:<11} {event.get('registrationId') or event.get('enrollmentGroupId')}")
        status = _wait(journal, [e["eventId"] for e in phase], deadline)
        results.update({e["eventId"]: (e, status[e["eventId"]]) for e in phase})
    queue.send_message(base64.b64encode(json.dumps(MALFORMED).encode()).decode())
    _say("sent malformed event (type 'misplaced', misspelt registrationID)")
    while time.monotonic() < deadline and sum(1 for _ in journal.iter_rejections()) <= rejected_before:
        time.sleep(0.5)
    rejected = sum(1 for _ in journal.iter_rejections()) - rejected_before
    _say("\nevent outcomes (journal):")
    for event, state in results.values():
        _say(f"  {event['eventId']:<34} {event['type']:<11} "
              f"{event.get('registrationId') or event.get('enrollmentGroupId'):<16} {state}")
    _say(f"  malformed event: {'rejected (recorded with field errors)' if rejected > 0 else 'NOT rejected'}")
    _say("\nfleet AFTER the events:\n" + demo_fleet.format_table(probe.table(stack.fleet)))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    ok = rejected > 0 and all(state == "completed" for _, state in results.values())
    _say("demo finished" + ("" if ok else " WITH PROBLEMS (see outcomes above)"))
    return 0 if ok else 1


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
