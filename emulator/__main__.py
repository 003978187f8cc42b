"""``python -m emulator --state-dir DIR``: run the DPS + IoT Hub emulator until interrupted.

Prints one line when ready and writes ``DIR/emulator.json`` (connection strings, CA bundle, admin URL).
Keys and SAS tokens are never printed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from emulator.iothub.jobtiming import DEFAULT_DEVICES_PER_SECOND, DEFAULT_START_SECONDS, check_number
from emulator.options import Options
from emulator.server import CONFIG_FILE, Emulator


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path, help="TLS material, emulator.json, state")
    parser.add_argument("--hubs", type=int, default=2, help="number of IoT hubs (default 2)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="DPS + admin port (0 = any free port)")
    parser.add_argument("--tier", default="S1", help="hub tier for throttling: S1|S2|S3|F1|off (default S1)")
    parser.add_argument("--units", type=int, default=1, help="hub units (default 1)")
    parser.add_argument("--time-compression", type=float, default=1.0,
                        help="divide throttle windows and job durations by this factor (default 1)")
    parser.add_argument("--job-rate", type=float, default=DEFAULT_DEVICES_PER_SECOND,
                        help="import/export job devices per second, real-service time (default ~278)")
    parser.add_argument("--job-start-latency", type=float, default=DEFAULT_START_SECONDS,
                        help="seconds a job stays enqueued, real-service time (default 10)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per call")
    parser.add_argument("--no-dps-throttle", action="store_true", help="disable the DPS 1,000/min budgets")
    parser.add_argument("--persist", action="store_true", help="keep state and ports across restarts")
    parser.add_argument("--standard-ports", action="store_true",
                        help="DPS and each hub on port 443 of its own 127.x.y.z address (needs root)")
    parser.add_argument("--retry-after", type=float, default=1.0,
                        help="Retry-After seconds DPS sends with 202 assigning (default 1)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.hubs < 1:
        parser.error("--hubs must be at least 1")
    try:  # the same checks as the admin API's, with the flag's name
        check_number("--time-compression", args.time_compression, positive=True)
        check_number("--job-rate", args.job_rate, positive=True)
        check_number("--job-start-latency", args.job_start_latency, positive=False)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    return Options(state_dir=args.state_dir, hubs=args.hubs, host=args.host, port=args.port, tier=args.tier,
                   units=args.units, time_compression=args.time_compression, latency_ms=args.latency_ms,
                   persist=args.persist, dps_throttle=not args.no_dps_throttle,
                   standard_ports=args.standard_ports, dps_retry_after=args.retry_after,
                   job_rate=args.job_rate, job_start=args.job_start_latency)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    emulator = Emulator(options)
    config = emulator.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hubs = ", ".join(f"{h['name']}={h['hostName']}" for h in config["hubs"])
    print(f"emulator ready: dps={config['dps']['hostName']} {hubs} config={emulator.state_dir / CONFIG_FILE}",
          flush=True)
    try:
        stop.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
