"""Small hand-written test doubles shared by the adapter integration tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Sleeps:
    """Injected sleep: records waits and runs ``between`` once, before the next attempt."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.between: Callable[[], None] | None = None

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.between is not None:
            action, self.between = self.between, None
            action()


class FakeTime:
    """A clock that only moves when the code under test sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def set_faults(emu: Any, **faults: Any) -> None:
    """Turn on the emulator's fault injection (see emulator/README.md, knobs)."""
    emu.admin("PUT", "/faults", json=faults)


def clear_faults(emu: Any) -> None:
    emu.admin("PUT", "/faults", json={})
