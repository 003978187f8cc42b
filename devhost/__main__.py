"""``python -m devhost [--app-root .] [--settings local.settings.json] [--port 7071] [--azurite]``.

Runs the app's functions locally like ``func start`` would, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devhost.host import Host, HostOptions


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost", description="Local Azure Functions host (v2 model)."
    )
    parser.add_argument("--app-root", type=Path, default=Path(), help="directory holding function_app.py")
    parser.add_argument(
        "--settings", type=Path, default=None, help="local.settings.json (default: in app root)"
    )
    parser.add_argument("--port", type=int, default=7071, help="HTTP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--state-dir", type=Path, default=None, help="where keys.json lives")
    parser.add_argument(
        "--azurite",
        action="store_true",
        help="start Azurite (queue+table, in memory) and use it for UseDevelopmentStorage=true",
    )
    parser.add_argument("--no-timers", action="store_true", help="do not run timer schedules")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("azure").setLevel(logging.WARNING)  # SDK request logs would include SAS query strings
    azurite = None
    if args.azurite:
        from devhost.azurite import start_azurite

        azurite = start_azurite()
        print(f"devhost: Azurite queue {azurite.queue_url}, table {azurite.table_url}")
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    options = HostOptions(
        app_root=args.app_root,
        settings_file=args.settings,
        port=args.port,
        state_dir=args.state_dir,
        dev_storage=azurite.connection_string if azurite else None,
        run_timers=not args.no_timers,
    )
    host = Host(options)
    try:
        host.start()
        print("devhost: running")
        for line in host.describe():
            print(f"  {line}")
        sys.stdout.flush()
        stopped.wait()
        print("devhost: stopping")
    finally:
        host.stop()
        if azurite:
            azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
