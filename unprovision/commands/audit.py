"""``audit [--remediate] [--json]``: check that revocations still hold; ``audit suppress|suppressions``.

The same audit as the timer and ``POST /api/audit`` (``unprovision.audit.run.run_audit``), under the same
one-at-a-time lease, on what ``unprovision.wiring.build_audit`` builds from the app settings (environment, or
an emulator's ``emulator.json`` with ``--emulator PATH``); remediation goes through the app's engine. Exit
codes: 0 clean, 2 invalid input, 4 findings (or a check that could not run) remain after the run, 5 another
audit is queued or running.

    python -m unprovision audit --json
    python -m unprovision audit suppress HUB_DEVICE_WITHOUT_REGISTRATION hub.example/lab-1 \\
        --until 2026-09-30 --reason "lab device, owned by QA"
    python -m unprovision audit suppressions
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from shared.audit import CheckId, parse_time
from shared.audit_report import render_table
from shared.ports import SuppressionRecord, SuppressionStore
from unprovision.audit.requests import AuditService, run_exclusive
from unprovision.audit.run import new_report_id
from unprovision.commands.apply import add_connection_options, load_settings

NAME = "audit"
EXIT_OK, EXIT_INVALID, EXIT_FINDINGS, EXIT_BUSY = 0, 2, 4, 5
MAX_REASON, MAX_RESOURCE = 256, 300


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        NAME, help="audit revocations (and manage suppressions)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--remediate", action="store_true", help="re-apply revocations that no longer hold")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_connection_options(parser)
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION")
    sup = actions.add_parser("suppress", help="suppress one finding until a date")
    sup.add_argument("check", help="check ID, e.g. HUB_DEVICE_WITHOUT_REGISTRATION")
    sup.add_argument("resource", help="the finding's resource, as the report shows it")
    sup.add_argument("--until", required=True, help="RFC 3339 date-time, or a date (midnight UTC)")
    sup.add_argument("--reason", required=True, help="why this is acceptable (kept with the suppression)")
    unsup = actions.add_parser("unsuppress", help="remove a suppression")
    unsup.add_argument("check")
    unsup.add_argument("resource")
    actions.add_parser("suppressions", help="list suppressions (expired ones marked)")
    return parser


def run(args: argparse.Namespace, *, service: AuditService | None = None, now: datetime | None = None,
        out: TextIO = sys.stdout) -> int:
    """``service`` and ``now`` are injectable for tests; by default from the settings and the clock."""
    moment = now or datetime.now(UTC)
    action = getattr(args, "audit_action", None)
    if action == "suppress":
        problem = _suppression_problem(args, moment)
        if problem:
            _say(sys.stderr, f"invalid input: {problem}")
            return EXIT_INVALID
    audit = service or _build(args)
    suppressions = audit.ports.suppressions
    if action == "suppress":
        return _suppress(args, suppressions, moment, out)
    if action == "unsuppress":
        removed = suppressions.delete(args.check, args.resource)
        _say(out, "removed" if removed else "no such suppression")
        return EXIT_OK
    if action == "suppressions":
        return _list(args, suppressions, moment, out)
    return _audit(args, audit, moment, out)


def _build(args: argparse.Namespace) -> AuditService:
    """From ``--settings``, ``--emulator`` or the environment, like every command."""
    from unprovision import wiring

    return wiring.build_audit(wiring.build_services(load_settings(args)))


def _audit(args: argparse.Namespace, service: AuditService, now: datetime, out: TextIO) -> int:
    report = run_exclusive(service, new_report_id(now), remediate=args.remediate, now=now)
    if report is None:
        held = service.lease.current()
        _say(sys.stderr, f"another audit is {held.state if held else 'running'}: "
                         f"{held.audit_id if held else 'unknown'}; try again when it has finished")
        return EXIT_BUSY
    _say(out, json.dumps(report.to_json(), indent=2) if args.json else render_table(report))
    return EXIT_FINDINGS if report.findings or report.errors else EXIT_OK


def _until(text: str) -> datetime:
    return parse_time(text if "T" in text or " " in text else f"{text}T00:00:00Z")


def _suppression_problem(args: argparse.Namespace, now: datetime) -> str | None:
    if args.check not in CheckId.__members__:
        return f"check: unknown check ID {args.check!r} (one of {', '.join(CheckId)})"
    if not args.resource or len(args.resource) > MAX_RESOURCE or not args.resource.isprintable():
        return f"resource: must be 1-{MAX_RESOURCE} printable characters"
    if not args.reason.strip() or len(args.reason) > MAX_REASON or not args.reason.isprintable():
        return f"reason: must be 1-{MAX_REASON} printable characters"
    try:
        until = _until(args.until)
    except ValueError:
        return "until: not a date or RFC 3339 date-time"
    return "until: must be in the future" if until <= now else None


def _suppress(args: argparse.Namespace, store: SuppressionStore, now: datetime, out: TextIO) -> int:
    until = _until(args.until).astimezone(UTC).isoformat().replace("+00:00", "Z")
    record = SuppressionRecord(args.check, args.resource, until, args.reason.strip(),
                               created_at=now.isoformat().replace("+00:00", "Z"))
    store.put(record)
    _say(out, f"suppressed {record.check} {record.resource} until {record.until}")
    return EXIT_OK


def _list(args: argparse.Namespace, store: SuppressionStore, now: datetime, out: TextIO) -> int:
    items = list(store.iter_all())
    if args.json:
        docs = [{**s.__dict__, "expired": parse_time(s.until) <= now} for s in items]
        _say(out, json.dumps(docs, indent=2))
        return EXIT_OK
    for s in items:
        state = "expired" if parse_time(s.until) <= now else "active"
        _say(out, f"{s.check}  {s.resource}  until {s.until} ({state})  {s.reason}")
    if not items:
        _say(out, "no suppressions")
    return EXIT_OK


def _say(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
