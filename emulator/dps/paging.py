"""Continuation-token paging for DPS queries (docs/azure-behaviour.md §3.5).

Why a cache: benchmarks page through 100k registration records; sorting the key set once per state version
keeps each page O(page size). The token is the decimal offset into that sorted list — opaque to clients.
The next token is ``None`` on the last page, so the route omits ``x-ms-continuation`` there (an empty value
makes the SDK loop forever). Without ``x-ms-max-item-count`` a page holds at most ``DEFAULT_PAGE_SIZE`` items
(the real default is not documented).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from emulator.dps import errors

DEFAULT_PAGE_SIZE = 1000


class Pager:
    """Sorted-key cache per (kind, group), dropped on every state change."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str | None], list[str]] = {}

    def invalidate(self) -> None:
        self._cache.clear()

    def keys(self, kind: str, group: str | None, select: Callable[[], Iterable[str]]) -> list[str]:
        slot = (kind, group.lower() if group else None)
        cached = self._cache.get(slot)
        if cached is None:
            cached = sorted(select())
            self._cache[slot] = cached
        return cached

    @staticmethod
    def page(keys: list[str], page_size: int | None, token: str | None) -> tuple[list[str], str | None]:
        size = DEFAULT_PAGE_SIZE if page_size is None else page_size
        if size < 1:
            raise errors.bad_request("x-ms-max-item-count must be a positive integer.")
        try:
            start = int(token) if token else 0
        except ValueError as exc:
            raise errors.bad_request("Invalid continuation token.") from exc
        if start < 0:
            raise errors.bad_request("Invalid continuation token.")
        end = start + size
        return keys[start:end], (str(end) if end < len(keys) else None)
