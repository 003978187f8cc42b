"""ReadCache: the adapters' bounded, short-lived memory of the last model read per ID (no I/O)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from shared.adapters.read_cache import ReadCache


@dataclass
class Model:
    """Stands for an SDK model: all the cache looks at is ``etag``."""

    name: str
    etag: str | None = "e1"


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_take_returns_the_cached_model_once() -> None:
    cache = ReadCache()
    model = Model("a")
    cache.put("a", model)
    assert cache.take("a") is model
    assert cache.take("a") is None


def test_a_model_older_than_the_max_age_is_not_returned() -> None:
    ticks = Ticks()
    cache = ReadCache(max_age=30, clock=ticks)
    cache.put("a", Model("a"))
    ticks.now += 29.9
    assert cache.take("a") is not None
    cache.put("a", Model("a"))
    ticks.now += 30.0
    assert cache.take("a") is None
    assert len(cache) == 0


def test_models_without_an_etag_are_never_kept() -> None:
    cache = ReadCache()
    cache.put("a", Model("a"))
    cache.put("a", Model("a", etag=None))  # also drops the older entry of that ID
    assert cache.take("a") is None


def test_the_least_recently_stored_entry_is_evicted_beyond_the_bound() -> None:
    cache = ReadCache(max_entries=3)
    for name in "abcd":
        cache.put(name, Model(name))
    cache.put("b", Model("b2"))  # refreshing b makes c the oldest
    cache.put("e", Model("e"))
    assert len(cache) == 3
    assert cache.take("a") is None
    assert cache.take("c") is None
    assert [m.name for m in (cache.take("b"), cache.take("d"), cache.take("e")) if m] == ["b2", "d", "e"]


def test_discard_and_clear_forget_entries() -> None:
    cache = ReadCache()
    cache.put("a", Model("a"))
    cache.put("b", Model("b"))
    cache.discard("a")
    cache.discard("missing")
    assert cache.take("a") is None
    cache.clear()
    assert cache.take("b") is None


def test_a_zero_sized_cache_keeps_nothing_and_negative_bounds_are_refused() -> None:
    cache = ReadCache(max_entries=0)
    cache.put("a", Model("a"))
    assert cache.take("a") is None
    with pytest.raises(ValueError, match="must not be negative"):
        ReadCache(max_entries=-1)
    with pytest.raises(ValueError, match="must not be negative"):
        ReadCache(max_age=-1)


def test_concurrent_takers_get_each_cached_model_at_most_once() -> None:
    cache = ReadCache(max_entries=500)
    for i in range(500):
        cache.put(i, Model(str(i)))
    taken: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [i for i in range(500) if cache.take(i) is not None]
        with lock:
            taken.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(500))
