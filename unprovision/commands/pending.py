"""``pending [--json] [--emulator PATH] [--settings FILE]``: what waits in each hub's pending set.

During a storm each single-device event's hub step may wait in its hub's set for a flush to apply it by
import job or bulk call (docs/engine.md, "Storms"); this counts them per hub: waiting, taken by a flush,
taken by a later event settling it. Read-only.

Exit codes: 0 read (every set may be empty), 2 storm coalescing is off or the app has no work queue.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from unprovision.commands.apply import add_connection_options, load_settings
from unprovision.storm.summary import HubSet, summarize

NAME = "pending"
EXIT_OK, EXIT_OFF = 0, 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        NAME, help="count the hub steps waiting in each hub's storm pending set", description=__doc__)
    add_connection_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from unprovision import wiring

    services = wiring.build_services(load_settings(args))  # not in_process(): that one never coalesces
    if services.engine.storm is None:
        sys.stderr.write("storm coalescing is off (STORM_COALESCING) or the app has no work queue: "
                         "no step waits\n")
        return EXIT_OFF
    sets = summarize(services.engine.storm.pending, services.registries.hubs())
    sys.stdout.write(json.dumps([s.to_dict() for s in sets], indent=2) + "\n" if args.json else render(sets))
    return EXIT_OK


def render(sets: list[HubSet]) -> str:
    lines = [f"{s.hub}: {s.waiting} waiting, {s.in_flush} in a flush, {s.settling} settling"
             + (f" ({', '.join(f'{a} {n}' for a, n in sorted(s.by_action.items()))})" if s.total else "")
             for s in sets]
    total = sum(s.total for s in sets)
    return "\n".join([*lines, f"{total} hub steps pending in all"]) + "\n"
