"""The operator CLI: ``python -m unprovision <command> ...``.

Commands are modules in ``unprovision.commands``, discovered at start-up: to add one (``apply``, ``send``,
``audit``...), drop a module there exposing::

    NAME: str                                          # optional; defaults to the module name
    def add_parser(subparsers) -> argparse.ArgumentParser
    def run(args: argparse.Namespace) -> int           # the process exit code

Exit codes shared by all commands: 0 success, 2 invalid input, 3 refused; a command may add its own.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import unprovision.commands

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_REFUSED = 3


def command_modules() -> list[ModuleType]:
    """Every command module, in name order (modules starting with ``_`` are helpers, not commands)."""
    package = unprovision.commands
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{package.__name__}.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m unprovision", description="Revoke IoT devices in DPS and IoT Hub."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    code: int = args.run(args)
    return code
