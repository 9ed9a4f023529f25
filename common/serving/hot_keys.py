"""Which rows each model is asked for most: the counts ``warm_cache`` warms from.

Serving counts rows in memory (a bounded counter per model, keyed by the hash of the row
and its parameters, which does not change with the version) and at most once a minute
merges the counts into one document per model, ``cache_hot/<model_id>``, on the request
that finds the minute elapsed (``flush_if_due``): one small transaction per model per
instance per minute, never a write per request, and nothing left to a thread after the
response, when Cloud Functions gives the instance no CPU. The counts are statistics, not
records: an instance that dies loses at most the minute it has not merged. The rows
themselves are company financials, so the document holds them only sealed
(``financial_data``, envelope-encrypted); the counts stay readable.

In memory each counted row is held as the compact JSON of its instance and parameters,
and the counts of one instance are bounded by rows per model and by bytes over all models
(``MAX_ROWS_IN_MEMORY``, ``MAX_BYTES_IN_MEMORY``): a stream of distinct rows, each asked
for once, never grows them past either bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from common.backends.base import DocumentStore, Transaction
from common.core.errors import ServiceError
from common.core.periodic import Interval
from common.registry.records import utcnow
from common.security.crypto import EnvelopeCipher

log = logging.getLogger("ipo.hot_keys")

COLLECTION = "cache_hot"
MAX_ROWS_IN_MEMORY = 2000
"""Per model; past this the less requested half of that model's rows is forgotten."""
MAX_BYTES_IN_MEMORY = 8 * 1024 * 1024
"""Over all models, counted as each row's JSON + ``ROW_OVERHEAD_BYTES``; past this the
less requested half of every model's rows is forgotten."""
ROW_OVERHEAD_BYTES = 320
"""Memory one counted row costs beyond its JSON: its 64-character id (113 bytes as a str),
the ``_Row``, the bytes header and the dictionary slot, 214 bytes measured with
tracemalloc on CPython 3.11; rounded up for a dictionary's growth."""
KEEP = 500
"""Rows per model kept in the store, most requested first."""
FLUSH_EVERY_S = 60.0


@dataclass(slots=True)
class _Row:
    count: int
    encoded: bytes
    """The compact JSON of ``[instance, parameters]``; decoded only when merged."""

    @property
    def size(self) -> int:
        return len(self.encoded) + ROW_OVERHEAD_BYTES


@dataclass(frozen=True)
class HotRow:
    row_id: str
    count: int
    instance: Any
    parameters: Any


def row_id(cache_key: str) -> str:
    """The part of a cache key that names the row, not the version."""
    return cache_key.rsplit(":", 1)[-1]


class HotKeys:
    def __init__(
        self,
        documents: DocumentStore,
        cipher: EnvelopeCipher,
        *,
        flush_every_s: float = FLUSH_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        max_rows: int = MAX_ROWS_IN_MEMORY,
        max_bytes: int = MAX_BYTES_IN_MEMORY,
    ) -> None:
        self._documents = documents
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._bytes = 0
        """The accounted size of ``_counts``."""
        self._cipher = cipher
        self._clock = clock
        self._counts: dict[str, dict[str, _Row]] = {}
        self._lock = threading.Lock()
        self._interval = Interval(flush_every_s, clock)
        self._flush_lock = threading.Lock()
        self._writing: dict[str, dict[str, _Row]] = {}
        """The counts a flush is writing now; in neither the store nor ``_counts`` yet."""

    def record(
        self, model_id: str, keys: Sequence[str], instances: Sequence[Any], parameters: Any
    ) -> None:
        with self._lock:
            rows = self._counts.setdefault(model_id, {})
            for key, instance in zip(keys, instances, strict=True):
                found = rows.get(rid := row_id(key))
                if found is None:
                    encoded = orjson.dumps([instance, parameters])
                    rows[rid] = row = _Row(1, bytes(memoryview(encoded)))  # orjson's is 4 KiB
                    self._bytes += row.size
                else:
                    found.count += 1
            self._bound(model_id)

    def _bound(self, model_id: str) -> None:
        """Forget the less requested half where a bound is passed (the lock held)."""
        rows = self._counts[model_id]
        if len(rows) > self._max_rows:
            self._counts[model_id] = self._halved(rows)
        if self._bytes > self._max_bytes:
            self._counts = {m: self._halved(r) for m, r in self._counts.items()}

    def _halved(self, rows: dict[str, _Row]) -> dict[str, _Row]:
        """The more requested half of ``rows`` (the lock held); the rest is forgotten."""
        ranked = sorted(rows.items(), key=lambda item: item[1].count, reverse=True)
        keep = min(len(rows) // 2, self._max_rows // 2)
        self._bytes -= sum(row.size for _, row in ranked[keep:])
        return dict(ranked[:keep])

    def held(self) -> tuple[int, int]:
        """Rows counted in memory and their accounted bytes (not those a flush is writing)."""
        with self._lock:
            return sum(len(rows) for rows in self._counts.values()), self._bytes

    def flush_if_due(self) -> None:
        """Merge on the calling request when the interval has elapsed and no other request
        is merging; a store fault keeps the counts for the next interval."""
        self._interval.run_if_due(self.flush, log, "request counts")

    def unsaved(self) -> int:
        """Requested rows counted here and not yet merged into the store."""
        with self._lock:
            held = [*self._counts.values(), *self._writing.values()]
            return sum(row.count for rows in held for row in rows.values())

    def flush(self) -> None:
        """Merge this instance's counts into the store and start counting afresh."""
        with self._flush_lock:  # one flush at a time: a request's and the exit's
            with self._lock:
                pending, self._counts, self._bytes = self._counts, {}, 0
                self._writing = pending
                self._interval.restart()
            failed: ServiceError | None = None
            for model_id, rows in list(pending.items()):
                try:
                    self._documents.transaction(partial(self._merge, model_id=model_id, rows=rows))
                    with self._lock:
                        pending.pop(model_id)
                except ServiceError as exc:
                    failed = failed or exc
                    with self._lock:  # put them back so the next flush tries again
                        for rid, row in rows.items():
                            kept = self._counts.setdefault(model_id, {}).get(rid)
                            if kept is None:
                                self._counts[model_id][rid] = row
                                self._bytes += row.size
                            else:
                                kept.count += row.count
                        pending.pop(model_id)
                        self._bound(model_id)
            if failed is not None:
                raise failed

    def _merge(self, tx: Transaction, *, model_id: str, rows: dict[str, _Row]) -> None:
        record_id = f"{COLLECTION}/{model_id}"
        merged = {row.row_id: row for row in self._stored(tx.get(COLLECTION, model_id), record_id)}
        for rid, row in rows.items():
            old = merged.get(rid)
            instance, parameters = orjson.loads(row.encoded)
            merged[rid] = HotRow(rid, row.count + (old.count if old else 0), instance, parameters)
        top = sorted(merged.values(), key=lambda r: r.count, reverse=True)[:KEEP]
        document = {
            "model_id": model_id,
            "updated_at": utcnow(),
            "counts": [{"row": r.row_id, "count": r.count} for r in top],
            "financial_data": [
                {"row": r.row_id, "instance": r.instance, "parameters": r.parameters} for r in top
            ],
        }
        tx.set(COLLECTION, model_id, self._cipher.seal(record_id, document))

    def _stored(self, document: Any, record_id: str) -> list[HotRow]:
        if document is None:
            return []
        data = self._cipher.open(record_id, document.data)
        counts = {c["row"]: int(c["count"]) for c in data.get("counts", [])}
        return [
            HotRow(r["row"], counts.get(r["row"], 0), r["instance"], r["parameters"])
            for r in data.get("financial_data", [])
        ]

    def top(self, model_id: str, limit: int) -> list[HotRow]:
        """The model's most requested rows, as stored (this instance's unsaved counts not
        included)."""
        document = self._documents.get(COLLECTION, model_id)
        rows = self._stored(document, f"{COLLECTION}/{model_id}")
        return sorted(rows, key=lambda r: r.count, reverse=True)[:limit]
