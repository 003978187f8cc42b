"""``audit [--remediate] [--json]``: check that revocations still hold; ``audit suppress|suppressions``.

The same audit as the timer and ``POST /api/audit`` (``unprovision.audit.run_audit``), on the ports that
``unprovision.wiring.build_services(settings)`` builds from the app settings (environment, or an emulator's
``emulator.json`` with ``--emulator PATH``). Exit codes: 0 clean, 2 invalid input, 4 findings (or a check
that could not run) remain after the run.

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

from shared.audit import CheckId, parse_time, render_table
from shared.ports import SuppressionRecord
from unprovision.commands.apply import add_connection_options, load_settings

NAME = "audit"
EXIT_OK, EXIT_INVALID, EXIT_FINDINGS = 0, 2, 4
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


def run(args: argparse.Namespace, *, services: Any = None, now: datetime | None = None,
        out: TextIO = sys.stdout) -> int:
    """``services`` and ``now`` are injectable for tests; by default from the settings and the clock."""
    moment = now or datetime.now(UTC)
    action = getattr(args, "audit_action", None)
    if action == "suppress":
        problem = _suppression_problem(args, moment)
        if problem:
            _say(sys.stderr, f"invalid input: {problem}")
            return EXIT_INVALID
    settings = None
    if services is None:
        settings = _settings(args)
        from unprovision import wiring

        services = wiring.build_services(settings)
    if action == "suppress":
        return _suppress(args, services, moment, out)
    if action == "unsuppress":
        removed = services.suppressions.delete(args.check, args.resource)
        _say(out, "removed" if removed else "no such suppression")
        return EXIT_OK
    if action == "suppressions":
        return _list(args, services, moment, out)
    return _audit(args, services, settings, moment, out)


def _settings(args: argparse.Namespace) -> Any:
    # One way to read settings for every command: --settings, --emulator, then the environment.
    return load_settings(args)


def _audit(args: argparse.Namespace, services: Any, settings: Any, now: datetime, out: TextIO) -> int:
    from unprovision.audit import run_audit

    report = run_audit(
        dps=services.dps, registries=services.registries, journal=services.journal,
        poison=getattr(services, "poison", None), reports=services.reports,
        suppressions=services.suppressions,
        now=now, settings=settings or {}, remediate=args.remediate,
        apply_fn=_apply_fn(services, settings) if args.remediate else None,
    )
    _say(out, json.dumps(report.to_json(), indent=2) if args.json else render_table(report))
    return EXIT_FINDINGS if report.findings or report.errors else EXIT_OK


def _apply_fn(services: Any, settings: Any) -> Any:
    """The engine with the configured policy and notifier, so audit remediations are reported like events."""
    from shared.policy import load_policy
    from unprovision import orchestrator

    policy = load_policy(getattr(settings, "policy_override", None))

    def apply(event: Any) -> Any:
        return orchestrator.apply(event, dps=services.dps, registries=services.registries,
                                  journal=services.journal, policy=policy,
                                  notifier=getattr(services, "notifier", None))

    return apply


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


def _suppress(args: argparse.Namespace, services: Any, now: datetime, out: TextIO) -> int:
    until = _until(args.until).astimezone(UTC).isoformat().replace("+00:00", "Z")
    record = SuppressionRecord(args.check, args.resource, until, args.reason.strip(),
                               created_at=now.isoformat().replace("+00:00", "Z"))
    services.suppressions.put(record)
    _say(out, f"suppressed {record.check} {record.resource} until {record.until}")
    return EXIT_OK


def _list(args: argparse.Namespace, services: Any, now: datetime, out: TextIO) -> int:
    items = list(services.suppressions.iter_all())
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
