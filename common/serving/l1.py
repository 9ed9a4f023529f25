"""L1 of the prediction cache: this instance's memory, bounded by entries and by bytes.

Entries are kept as their orjson encoding, the same bytes L2 holds: a decoded dict is
several times larger and hard to measure, an L2 hit fills L1 without encoding again, and
every hit decodes a fresh value that a caller may change without changing the cache.

The byte bound counts what an entry really costs: its key's bytes, its value's bytes and
``ENTRY_OVERHEAD_BYTES`` for the objects that hold them. Each value is kept as a compact
copy: orjson returns its output in a buffer of at least 4 KiB whatever the length (a 100-byte
prediction holds 4 KiB of memory), so keeping orjson's own bytes object would make the
real size many times the counted one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from cachetools import TTLCache

ENTRY_OVERHEAD_BYTES = 320
"""Memory one entry costs beyond its key's and value's bytes. Measured with tracemalloc on
CPython 3.11 and cachetools 8.0 (``tests/serving/test_l1.py`` checks it still covers the
measurement): 195 to 223 bytes in the cache's three dictionaries, its LRU link and expiry
time, 49 for the key's str header and 33 for the value's bytes header, 277 to 305 in all;
rounded up for the allocator's own headers."""


def entry_size(key: str, raw: bytes) -> int:
    """The bytes one entry is counted for: key + value + ``ENTRY_OVERHEAD_BYTES``."""
    return len(key) + len(raw) + ENTRY_OVERHEAD_BYTES


class _BoundedTTLCache(TTLCache[str, bytes]):
    """TTL + LRU by accounted bytes (``maxsize``), and at most ``max_entries`` entries.

    cachetools sizes a value without its key, so ``__setitem__`` hands the key's length to
    ``_size_of`` (the owner's lock serialises every call)."""

    def __init__(
        self, max_entries: int, max_bytes: int, ttl_s: float, clock: Callable[[], float]
    ) -> None:
        self._key_bytes = 0
        super().__init__(maxsize=max_bytes, ttl=ttl_s, timer=clock, getsizeof=self._size_of)
        self.max_entries = max_entries
        self.evictions = 0

    def _size_of(self, value: bytes) -> int:
        return self._key_bytes + len(value) + ENTRY_OVERHEAD_BYTES

    def __setitem__(self, key: str, value: bytes) -> None:
        self._key_bytes = len(key)
        super().__setitem__(key, value)
        while len(self) > self.max_entries:
            self.popitem()

    def popitem(self) -> tuple[str, bytes]:
        """Called by cachetools only to make room, so each call is one eviction."""
        item = super().popitem()
        self.evictions += 1
        return item


class L1Cache:
    """Thread-safe; one lock, held only for dictionary work, never for I/O."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("L1 bounds must not be negative")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._store = (
            _BoundedTTLCache(max_entries, max_bytes, ttl_s, clock)
            if max_entries > 0 and max_bytes > 0
            else None
        )

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The encodings found (a hit also makes the entry most recently used)."""
        store = self._store
        if store is None:
            return {}
        found: dict[str, bytes] = {}
        with self._lock:
            for key in keys:
                raw = store.get(key)
                if raw is not None:
                    found[key] = raw
        return found

    def set_many(self, items: Mapping[str, bytes]) -> None:
        """Store a compact copy of each encoding; an entry larger than the whole byte
        bound is not kept."""
        store = self._store
        if store is None:
            return
        copies = {
            key: bytes(memoryview(raw))
            for key, raw in items.items()
            if entry_size(key, raw) <= self.max_bytes
        }
        with self._lock:
            for key in items:
                if key in copies:
                    store[key] = copies[key]
                else:
                    store.pop(key, None)

    def discard(self, keys: Sequence[str]) -> None:
        store = self._store
        if store is None:
            return
        with self._lock:
            for key in keys:
                store.pop(key, None)

    def purge_prefix(self, prefix: str) -> set[str]:
        """Remove every live entry whose key starts with ``prefix``; the keys removed."""
        store = self._store
        if store is None:
            return set()
        with self._lock:
            doomed = {key for key in store if key.startswith(prefix)}
            for key in doomed:
                store.pop(key, None)
        return doomed

    def stats(self) -> dict[str, int]:
        """``l1_bytes`` is the accounted size: keys, values and per-entry overhead."""
        store = self._store
        if store is None:
            return {"l1_entries": 0, "l1_bytes": 0, "l1_evictions": 0}
        with self._lock:
            return {
                "l1_entries": len(store),
                "l1_bytes": int(store.currsize),
                "l1_evictions": store.evictions,
            }
