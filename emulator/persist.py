"""Optional persistence (``--persist``): one JSON snapshot in the state directory.

What is saved: ports, ID scope, policy keys, DPS state and every hub's registry — enough for a restarted
emulator to come back on the same ports (when free) so that ``assignedHub`` values in DPS records stay
valid. Snapshots are written atomically (temp file + rename) on stop, on ``POST /_emulator/save`` and
by a background thread at most every ``interval`` seconds after a successful mutating call.
The file holds keys: it is created with mode 0600, like the TLS keys next to it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("emulator")
SNAPSHOT = "state.json"
FORMAT = 1


def load(state_dir: Path) -> dict[str, Any] | None:
    """The previous snapshot, or None when absent or unreadable (a corrupt file is logged and ignored)."""
    path = state_dir / SNAPSHOT
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("ignoring unreadable snapshot %s", path)
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def save(state_dir: Path, snapshot: dict[str, Any]) -> Path:
    """Write ``snapshot`` atomically; returns the file path."""
    path = state_dir / SNAPSHOT
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({**snapshot, "format": FORMAT}, handle)
    temp.replace(path)
    return path


def port_free(host: str, port: int) -> bool:
    """True when ``port`` can be bound on ``host`` right now (used to reuse previous ports)."""
    if not port:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class AutoSaver:
    """Saves in the background when marked dirty, at most every ``interval`` seconds."""

    def __init__(self, save_now: Callable[[], object], interval: float = 2.0) -> None:
        self._save_now = save_now
        self._interval = interval
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-autosave", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def mark(self) -> None:
        self._dirty.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._dirty.is_set():
                self._dirty.clear()
                try:
                    self._save_now()
                except Exception:
                    log.exception("autosave failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
