"""``apply EVENT.json [--dry-run] [--emulator PATH] [--settings FILE] [--json]``: apply an event now.

Runs the same engine as the function app against the configured services (app settings from the
environment, ``--settings local.settings.json``, or an emulator's ``emulator.json``), but in process: group
work is purged here, with a progress bar on stderr, instead of going through the work queue. Prints the plan,
then the outcome table. Exit codes: 0 completed (or planned with --dry-run), 2 invalid input, 3 refused,
4 failed, 5 a transient failure (try again; the journal resumes where it stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.adapters.settings import DEV_STORAGE, HOST_STORAGE, Settings, from_emulator, load_local_settings
from shared.errors import FieldError, Rejected
from unprovision.commands.plan import render_plan
from unprovision.group.inprocess import Progress
from unprovision.outcomes import Outcome, classify

NAME = "apply"
EXIT_OK, EXIT_INVALID, EXIT_REFUSED, EXIT_FAILED, EXIT_RETRY = 0, 2, 3, 4, 5
_EXIT_BY_STATUS = {"completed": EXIT_OK, "dry_run": EXIT_OK, "in_progress": EXIT_OK, "refused": EXIT_REFUSED,
                   "rejected": EXIT_INVALID, "failed": EXIT_FAILED}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        NAME, help="apply a lifecycle event to DPS and the hubs", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("event", type=Path, help="lifecycle event JSON file")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    add_connection_options(parser)
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return parser


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--emulator", type=Path, help="take DPS, hubs and CA bundle from this emulator.json")
    parser.add_argument("--settings", type=Path, help="local.settings.json whose Values become settings")


def load_settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, after ``--settings`` (not overriding variables already set) and
    ``--emulator`` (DPS, hubs, CA bundle; storage from AzureWebJobsStorage or JOURNAL_CONNECTION)."""
    if getattr(args, "settings", None):
        load_local_settings(args.settings)
    if getattr(args, "emulator", None):
        storage = os.environ.get("JOURNAL_CONNECTION") or os.environ.get(HOST_STORAGE) or DEV_STORAGE
        if storage.replace(" ", "").lower() == "usedevelopmentstorage=true":
            storage = DEV_STORAGE
        return from_emulator(args.emulator, storage, base=os.environ)
    return Settings.from_env()


def build(args: argparse.Namespace) -> Any:
    """Services for a CLI run: group work in process (no work queue)."""
    from unprovision import wiring

    return wiring.build_services(load_settings(args)).in_process()


class ProgressBar:
    """Plain-text progress per hub on stderr: one line, rewritten with ``\\r``.

    The group's registrations are streamed, so the total is not known in advance: the line counts devices
    done per hub rather than drawing a fraction that would have to be guessed.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.by_hub: dict[str, Progress] = {}

    def __call__(self, progress: Progress) -> None:
        self.by_hub[progress.hub] = progress
        done = sum(p.done for p in self.by_hub.values())
        failed = sum(p.failed for p in self.by_hub.values())
        per_hub = " | ".join(f"{hub}: {p.done}" for hub, p in sorted(self.by_hub.items()))
        self.stream.write(f"\rgroup work [{per_hub}] {done} devices done, {failed} failed")
        self.stream.flush()

    def close(self) -> None:
        if self.by_hub:
            self.stream.write("\n")


def run(args: argparse.Namespace, *, services: Any = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    from unprovision import service

    out, err = out or sys.stdout, err or sys.stderr
    try:
        text = read_event(args.event)
        services = services or build(args)
        bar = ProgressBar(err)
        try:
            outcome = service.handle_event_body(text, services, dry_run=args.dry_run, progress=bar)
        finally:
            bar.close()
    except Exception as exc:  # noqa: BLE001 - classify() decides; the message names no secret
        disposition = classify(exc)
        err.write(f"{disposition.code}: {exc}\n")
        for detail in disposition.details:
            err.write(f"  {detail['field']}: {detail['reason']}\n")
        return EXIT_RETRY if disposition.retry else (EXIT_INVALID if disposition.status == "rejected"
                                                     else EXIT_FAILED)
    print_outcome(outcome, args.json, out, err)
    return _EXIT_BY_STATUS.get(outcome.status, EXIT_FAILED)


def read_event(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read {path} ({type(exc).__name__})"
        raise Rejected([FieldError("$", reason)], "invalid input") from None


def print_outcome(outcome: Outcome, as_json: bool, out: TextIO, err: TextIO) -> None:
    errors = getattr(outcome, "errors", ())
    if outcome.status == "rejected":
        err.write("invalid lifecycle event\n")
        for e in errors:
            err.write(f"  {e['field']}: {e['reason']}\n")
        return
    if as_json:
        out.write(json.dumps(outcome.to_dict(), indent=2) + "\n")
        return
    if outcome.plan is not None:
        out.write(render_plan(outcome.plan))
    out.write(render_outcome(outcome))


def render_outcome(outcome: Outcome) -> str:
    lines = [f"Outcome of {outcome.event_id}: {outcome.status}"]
    rows = [("#", "step", "target", "hub", "outcome", "detail")]
    rows += [(str(s.index + 1), s.kind, s.target, s.hub or "-", s.outcome, s.error or s.after or "")
             for s in outcome.steps]
    if outcome.steps:
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        lines += ["  " + "  ".join([*(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)), r[5]])
                  for r in rows]
    if outcome.error:
        lines.append(f"error: {outcome.error}")
    return "\n".join(lines) + "\n"
