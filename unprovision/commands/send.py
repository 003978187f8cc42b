"""``send EVENT.json [--queue NAME] [--servicebus] [--settings FILE]``: post an event to the lifecycle queue.

``--servicebus`` sends it as one Service Bus message to ``SERVICEBUS_QUEUE`` (default ``device-lifecycle``)
with ``SERVICEBUS_CONNECTION`` (set ``SERVICEBUS_CA_BUNDLE`` for the emulator's stand-in); otherwise (base64)
to the storage queue below.

The event is validated here first: a bad event is refused before sending, with every field error (exit 2).
The queue is ``--queue``, else ``LIFECYCLE_QUEUE`` (default ``device-lifecycle``), in the storage account of
``AzureWebJobsStorage``. Exit codes: 0 sent, 2 invalid input, 5 the queue could not be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.adapters.queues import StorageQueueSender
from shared.adapters.servicebus_connect import send_text
from shared.adapters.settings import (
    HOST_STORAGE,
    SERVICEBUS_CONNECTION,
    SERVICEBUS_QUEUE,
    Settings,
    load_local_settings,
    resolve_connection,
)
from shared.errors import Rejected, UnprovisionError
from shared.events import parse_event
from unprovision.commands.apply import read_event

NAME = "send"
EXIT_OK, EXIT_INVALID, EXIT_RETRY = 0, 2, 5


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        NAME, help="validate an event and post it to the lifecycle queue", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("event", type=Path, help="lifecycle event JSON file")
    parser.add_argument("--queue", help="queue name (default: LIFECYCLE_QUEUE or device-lifecycle)")
    parser.add_argument("--servicebus", action="store_true",
                        help="send over Service Bus (SERVICEBUS_CONNECTION)")
    parser.add_argument("--settings", type=Path, help="local.settings.json whose Values become settings")
    return parser


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.settings:
        load_local_settings(args.settings)
    try:
        text = read_event(args.event)
        event = parse_event(text)
        if getattr(args, "servicebus", False):
            queue = args.queue or os.environ.get(SERVICEBUS_QUEUE) or "device-lifecycle"
            sb = resolve_connection(os.environ, SERVICEBUS_CONNECTION)
            if sb is None or sb.connection_string is None:
                err.write(f"{SERVICEBUS_CONNECTION} is not set to a connection string\n")
                return EXIT_INVALID
            send_text(sb.connection_string, queue, text, message_id=event.event_id)
            out.write(f"sent {event.type.value} event {event.event_id} to Service Bus queue {queue}\n")
            return EXIT_OK
        queue = args.queue or Settings.from_env().lifecycle_queue
        connection = resolve_connection(os.environ, HOST_STORAGE)  # a connection string or identity-based
        if connection is None:
            err.write(f"{HOST_STORAGE} is not set (a connection string, or {HOST_STORAGE}__accountName)\n")
            return EXIT_INVALID
        sender = StorageQueueSender(connection, queue)
    except Rejected as exc:
        err.write(f"{str(exc).split(':', 1)[0]}; not sent\n")
        for e in exc.errors:
            err.write(f"  {e.field}: {e.reason}\n")
        return EXIT_INVALID
    try:
        sender.send_text(text)
    except UnprovisionError as exc:  # the queue could not take it (storage said why)
        err.write(f"{exc}\n")
        return EXIT_RETRY
    out.write(f"sent {event.type.value} event {event.event_id} to queue {queue}\n")
    return EXIT_OK
