"""A fixed-size set sketch (Bloom filter): "no" is certain, "maybe" is wrong with a chosen probability.

The audit joins hub devices and DPS registrations with it, in memory fixed by settings, not by fleet size.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable


class BloomFilter:
    """``capacity`` keys at ``error_rate`` false "maybe"s; never a false "no"."""

    def __init__(self, capacity: int, error_rate: float = 0.01) -> None:
        bits = max(64, int(-capacity * math.log(error_rate) / (math.log(2) ** 2)))
        self._size = bits
        self._hashes = max(1, round(bits / max(1, capacity) * math.log(2)))
        self._bits = bytearray((bits + 7) // 8)

    def _positions(self, key: str) -> Iterable[int]:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        h1, h2 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big") | 1
        return ((h1 + i * h2) % self._size for i in range(self._hashes))

    def add(self, key: str) -> None:
        for p in self._positions(key):
            self._bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: str) -> bool:
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))
