"""L1's byte bound counts keys and per-entry overhead, and holds what it counts."""

from __future__ import annotations

import sys
import tracemalloc

import orjson
import pytest

from common.serving.l1 import ENTRY_OVERHEAD_BYTES, L1Cache, entry_size


def test_long_keys_with_small_values_are_counted_and_evicted() -> None:
    bound = 64 * 1024
    l1 = L1Cache(max_entries=1_000_000, max_bytes=bound, ttl_s=300)
    keys = [f"ipo:c1:risk:1.0.0:{'k' * 400}:{i:08d}" for i in range(2000)]
    for key in keys:
        l1.set_many({key: b"1"})
        assert l1.stats()["l1_bytes"] <= bound
    stats = l1.stats()
    per_entry = entry_size(keys[0], b"1")
    assert per_entry > len(keys[0]) + ENTRY_OVERHEAD_BYTES  # the key dominates, and counts
    assert stats["l1_entries"] == bound // per_entry
    assert stats["l1_bytes"] == stats["l1_entries"] * per_entry
    assert stats["l1_evictions"] == len(keys) - stats["l1_entries"]
    assert set(l1.get_many(keys)) == set(keys[-stats["l1_entries"] :])  # the newest stay


def test_an_entry_larger_than_the_bound_is_not_kept() -> None:
    l1 = L1Cache(max_entries=10, max_bytes=ENTRY_OVERHEAD_BYTES + 100, ttl_s=300)
    l1.set_many({"k" * 60: b"v" * 40})  # exactly the bound
    l1.set_many({"k" * 61: b"v" * 40})  # one byte of key over it
    assert set(l1.get_many(["k" * 60, "k" * 61])) == {"k" * 60}


def test_values_are_kept_as_compact_copies_of_orjson_output() -> None:
    """orjson's bytes hold a 4 KiB buffer however short; L1 keeps a copy of the length."""
    l1 = L1Cache(max_entries=10, max_bytes=10**6, ttl_s=300)
    raw = orjson.dumps({"probability": 0.25})
    l1.set_many({"key": raw})
    kept = l1.get_many(["key"])["key"]
    assert kept == raw
    assert kept is not raw
    assert sys.getsizeof(kept) == sys.getsizeof(bytes(len(raw)))


@pytest.mark.parametrize(("key_chars", "value_bytes"), [(20, 10), (100, 100), (140, 1000)])
def test_the_overhead_estimate_covers_what_an_entry_costs(key_chars: int, value_bytes: int) -> None:
    """What tracemalloc sees one entry take (key and value objects included) is no more
    than the accounted size."""
    n = 5000
    l1 = L1Cache(max_entries=n, max_bytes=10**9, ttl_s=300)
    keys = [f"{i:0{key_chars}d}" for i in range(n)]
    values = [orjson.dumps("x" * (value_bytes - 2)) for _ in range(n)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key, raw in zip(keys, values, strict=True):
            l1.set_many({key: raw})
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # the keys were created before; a kept entry owns its key, so count it here
    measured = (after - before) / n + sys.getsizeof(keys[0])
    assert measured <= entry_size(keys[0], values[0])
    assert l1.stats()["l1_bytes"] == n * entry_size(keys[0], values[0])
