"""Function keys for the local HTTP front end: a master (admin) key and a default function key.

Core Tools switches key checks off locally; devhost enforces them (stricter, catches a wrong auth level early;
docs/azure-behaviour.md §F4). Keys come from settings ``DEVHOST_MASTER_KEY`` / ``DEVHOST_FUNCTION_KEY`` when
set, otherwise from ``<state_dir>/keys.json``, generated on first run. The generated keys are printed once, at
creation, with a hint where they live (unless the caller asks for quiet creation, as ``devhost.stack`` does:
it shows the function key itself); they are never logged afterwards. This module alone knows the keys file
layout.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MASTER_KEY_SETTING = "DEVHOST_MASTER_KEY"
FUNCTION_KEY_SETTING = "DEVHOST_FUNCTION_KEY"
KEYS_FILE = "keys.json"


@dataclass(frozen=True)
class KeyStore:
    """The keys the HTTP front end accepts. ``repr`` hides them so they never reach a log line."""

    master_key: str = field(repr=False)
    function_key: str = field(repr=False)

    def authorizes(self, required_level: str, presented: str | None) -> bool:
        """Whether ``presented`` satisfies ``required_level`` (anonymous / function / admin),
        docs/azure-behaviour.md §F4.

        The master key satisfies every level; the default (host-wide) function key satisfies ``function``.
        """
        level = required_level.lower()
        if level == "anonymous":
            return True
        if not presented:
            return False
        if hmac.compare_digest(presented.encode(), self.master_key.encode()):
            return True
        return level == "function" and hmac.compare_digest(presented.encode(), self.function_key.encode())


def _new_key() -> str:
    return secrets.token_urlsafe(32)


def _read(path: Path) -> KeyStore | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return KeyStore(master_key=str(doc["masterKey"]), function_key=str(doc["functionKeys"]["default"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _create(path: Path, *, announce: bool) -> KeyStore:
    store = KeyStore(master_key=_new_key(), function_key=_new_key())
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"masterKey": store.master_key, "functionKeys": {"default": store.function_key}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
    if announce:
        _announce(path, store)
    return store


def _announce(path: Path, store: KeyStore) -> None:
    # The one and only time the keys are shown: the developer needs them to call FUNCTION-level routes.
    sys.stdout.write(
        f"devhost: generated HTTP keys in {path} (kept there; shown only now)\n"
        f"  function key: {store.function_key}\n"
        f"  master key:   {store.master_key}\n"
        "  send one as header x-functions-key or query parameter ?code=\n"
    )
    sys.stdout.flush()


def keys_file(state_dir: Path) -> Path:
    """Where ``load_keys`` keeps the generated keys (for hints that name the file, never its content)."""
    return state_dir / KEYS_FILE


def load_keys(state_dir: Path, settings: Mapping[str, str], *, announce: bool = True) -> KeyStore:
    """Keys from settings, else from ``<state_dir>/keys.json`` (created on first run).

    ``announce=False`` creates the file without printing the new keys (callers that show a key themselves).
    """
    master, function = settings.get(MASTER_KEY_SETTING), settings.get(FUNCTION_KEY_SETTING)
    path = keys_file(state_dir)
    stored = _read(path) if not (master and function) else None
    if not (master and function) and stored is None:
        stored = _create(path, announce=announce)
    return KeyStore(
        master_key=master or (stored.master_key if stored else _new_key()),
        function_key=function or (stored.function_key if stored else _new_key()),
    )
