"""``plan EVENT.json --inventory INVENTORY.json [--policy JSON|@FILE] [--json]``: show what an event would do.

Reads nothing but the two files (no DPS, no hub): the event is validated, the snapshot of its target is cut
from the inventory (see ``shared.inventory_file``) and the pure planner decides. Exit codes: 0 planned,
2 invalid input (every field error printed), 3 refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.errors import Rejected
from shared.events import parse_event
from shared.inventory_file import parse_inventory, select_snapshot
from shared.plan import Plan, plan_to_dict
from shared.policy import load_policy
from shared.revocation import plan_revocation

NAME = "plan"
EXIT_OK, EXIT_INVALID, EXIT_REFUSED = 0, 2, 3


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        NAME, help="plan the revocation for an event (reads files only)", description=__doc__
    )
    parser.add_argument("event", type=Path, help="lifecycle event JSON file")
    parser.add_argument("--inventory", type=Path, required=True, help="fleet inventory JSON file")
    parser.add_argument("--policy", help="policy override: JSON text, or @FILE")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Rejected([], f"cannot read {what} file {path} ({type(exc).__name__})") from None


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        event = parse_event(_read(args.event, "event"))
        fleet = parse_inventory(_read(args.inventory, "inventory"))
        policy_text = args.policy
        if policy_text and policy_text.startswith("@"):
            policy_text = _read(Path(policy_text[1:]), "policy")
        policy = load_policy(policy_text)
    except Rejected as exc:
        _print_rejection(exc, err)
        return EXIT_INVALID
    plan = plan_revocation(event, policy, select_snapshot(fleet, event))
    if args.json:
        out.write(json.dumps(plan_to_dict(plan), indent=2) + "\n")
    else:
        out.write(render_plan(plan))
    return EXIT_REFUSED if plan.refused else EXIT_OK


def _print_rejection(exc: Rejected, err: TextIO) -> None:
    message = str(exc).split(":", 1)[0] if exc.errors else str(exc)
    err.write(f"{message}\n")
    for e in exc.errors:
        err.write(f"  {e.field}: {e.reason}\n")


def render_plan(plan: Plan) -> str:
    """A readable table: one row per step, then warnings and the refusal."""
    lines = [f"Plan for {plan.event_type} event {plan.event_id} on {plan.target}"]
    if plan.refused:
        lines.append(f"REFUSED: {plan.refusal}")
    rows = [("#", "service", "step", "target", "hub", "reason")]
    rows += [
        (str(i), s.service.value, s.kind.value, s.target, s.hub or "-", s.reason)
        for i, s in enumerate(plan.steps, 1)
    ]
    if plan.steps:
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        for row in rows:
            cells = [cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)]
            lines.append("  " + "  ".join([*cells, row[5]]))
    elif not plan.refused:
        lines.append("  (no steps)")
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines) + "\n"
