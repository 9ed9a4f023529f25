"""L1 of the prediction cache: this instance's memory, bounded by entries and by bytes.

Entries are kept as their orjson encoding, the same bytes L2 holds: the byte bound is then
the real size of what is kept (a decoded dict is several times larger and hard to
measure), an L2 hit fills L1 without encoding again, and every hit decodes a fresh value
that a caller may change without changing the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from cachetools import TTLCache


class _BoundedTTLCache(TTLCache[str, bytes]):
    """TTL + LRU by encoded bytes (``maxsize``), and at most ``max_entries`` entries."""

    def __init__(
        self, max_entries: int, max_bytes: int, ttl_s: float, clock: Callable[[], float]
    ) -> None:
        super().__init__(maxsize=max_bytes, ttl=ttl_s, timer=clock, getsizeof=len)
        self.max_entries = max_entries
        self.evictions = 0

    def __setitem__(self, key: str, value: bytes) -> None:
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
        """Store each encoding; one larger than the whole byte bound is not kept."""
        store = self._store
        if store is None:
            return
        with self._lock:
            for key, raw in items.items():
                if len(raw) <= self.max_bytes:
                    store[key] = raw
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
        store = self._store
        if store is None:
            return {"l1_entries": 0, "l1_bytes": 0, "l1_evictions": 0}
        with self._lock:
            return {
                "l1_entries": len(store),
                "l1_bytes": int(store.currsize),
                "l1_evictions": store.evictions,
            }
