"""``outcomes [--max N] [--wait S] [--settings FILE]``: read (and complete) outcome messages from Service Bus.

Reads ``OUTCOME_QUEUE_OR_TOPIC`` (a queue; ``queue:`` prefix allowed) with ``OUTCOME_SERVICEBUS_CONNECTION``
(set ``SERVICEBUS_CA_BUNDLE`` for the emulator's stand-in) and prints one JSON line per message:
``{"messageId", "correlationId", "body"}``. Exit codes: 0 read (even none), 2 not configured, 5 unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.adapters.servicebus_connect import receive_texts
from shared.adapters.settings import (
    OUTCOME_QUEUE_OR_TOPIC,
    OUTCOME_SERVICEBUS_CONNECTION,
    load_local_settings,
    resolve_connection,
)

NAME = "outcomes"
EXIT_OK, EXIT_INVALID, EXIT_RETRY = 0, 2, 5


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        help="read outcome notifications from Service Bus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--max", type=int, default=10, help="messages to read at most (default 10)")
    parser.add_argument("--wait", type=float, default=2.0, help="seconds to wait for messages (default 2)")
    parser.add_argument("--settings", type=Path, help="local.settings.json whose Values become settings")
    return parser


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.settings:
        load_local_settings(args.settings)
    connection = resolve_connection(os.environ, OUTCOME_SERVICEBUS_CONNECTION)
    entity = os.environ.get(OUTCOME_QUEUE_OR_TOPIC, "")
    if connection is None or connection.connection_string is None or not entity:
        err.write(f"{OUTCOME_SERVICEBUS_CONNECTION} and {OUTCOME_QUEUE_OR_TOPIC} must be set\n")
        return EXIT_INVALID
    if entity.startswith("topic:"):
        err.write("outcomes reads a queue; read a topic's subscription with the SDK\n")
        return EXIT_INVALID
    try:
        messages = receive_texts(
            connection.connection_string, entity.removeprefix("queue:"), max_messages=args.max, wait=args.wait
        )
    except Exception as exc:  # noqa: BLE001 - any SDK failure is "unreachable" for this CLI
        err.write(f"could not read outcomes: {type(exc).__name__}\n")
        return EXIT_RETRY
    for message in messages:
        out.write(json.dumps(message) + "\n")
    return EXIT_OK
