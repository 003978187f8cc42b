"""``status EVENT_ID [--json] [--emulator PATH] [--settings FILE]``: print the journal's record of an event.

Exit codes: 0 found, 2 invalid eventId, 4 unknown event.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from shared.errors import Rejected
from unprovision.commands.apply import add_connection_options, build

NAME = "status"
EXIT_OK, EXIT_INVALID, EXIT_UNKNOWN = 0, 2, 4


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        NAME, help="show the journal's record of an event", description=__doc__)
    parser.add_argument("event_id", help="the event's eventId")
    add_connection_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def run(args: argparse.Namespace, *, services: Any = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    from unprovision import service

    out, err = out or sys.stdout, err or sys.stderr
    try:
        document = service.event_status(args.event_id, services or build(args))
    except Rejected as exc:
        err.write(f"{exc}\n")
        return EXIT_INVALID
    if document is None:
        err.write(f"no event {args.event_id!r} in the journal\n")
        return EXIT_UNKNOWN
    out.write(json.dumps(document, indent=2) + "\n" if args.json else render(document))
    return EXIT_OK


def render(doc: dict[str, Any]) -> str:
    lines = [(f"{doc['eventId']}: {doc['status']} ({doc.get('type')} on {doc.get('target')}, "
             f"source {doc.get('source')}, updated {doc.get('updatedAt')})")]
    lines += [_step_line(s) for s in doc.get("steps", [])]
    lines += [f"  group step {p['stepIndex'] + 1}: batches {p['batchesDone']}/{p['batchesExpected']}"
              for p in doc.get("groupProgress", [])]
    if doc.get("error"):
        lines.append(f"  error: {doc['error']}")
    return "\n".join(lines) + "\n"


def _step_line(step: dict[str, Any]) -> str:
    """One step; ``after`` says what it left (a device's status) or what applied it (a storm's ``import job
    <id>`` or ``bulk call``), or, on a step waiting in its hub's pending set, that a flush will."""
    hub = f" {step['hub']}" if step.get("hub") else ""
    after = f" [{step['after']}]" if step.get("after") else ""
    error = f" ({step['error']})" if step.get("error") else ""
    return f"  {step['index'] + 1}. {step['kind']} {step['target']}{hub} -> {step['outcome']}{after}{error}"
