"""The two-level prediction cache: L1 in this instance's memory, L2 in Redis (Memorystore).

One entry per instance (row of a request), not per request: a batch in which some rows
were seen before computes only the others, in one vectorised call
(``compute_missing``), and requests that share rows share entries. L2 is shared by every
function instance, so a row computed by one instance is a hit for all the others; L1
saves the round trip for the rows this instance sees again (``common/serving/l1.py``).

The key holds the model id and version, then a hash of the canonical JSON of the row and
its parameters. Promoting or rolling back a version makes the old entries unreachable at
once, with no invalidation message to every instance; they expire by their TTL.
``purge_model`` removes a model's entries outright (L1 of this instance and L2).

Single flight: when several threads of this process miss the same row, one computes it
and the others wait for its result instead of computing it again, so a burst of equal
requests costs one prediction per row. A waiter that times out, or whose computation
failed, computes the row itself. A row can rarely still be computed twice (a lookup just
before another thread stores it); the result is the same either way.

Redis is an optimisation, never a dependency: an error, a timeout (``redis_timeout_s``)
or an answer that is not JSON never fails a call. The call goes on without L2, and
``RedisHealth`` leaves Redis alone for a backoff period, logging once per period.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from common.backends.redis_client import RedisHealth
from common.core.config import Settings
from common.serving.l1 import L1Cache

if TYPE_CHECKING:
    import redis

log = logging.getLogger("ipo.cache")

KEY_PREFIX = "ipo:c1:"
"""``c1`` is the format of keys and values; a change of either gets a new prefix."""
KIND_TTLS_S = {"prediction": 3600, "features": 1800, "market": 300, "metadata": 86400}
SINGLE_FLIGHT_WAIT_S = 30.0
_SCAN_COUNT = 500
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def cache_key(model_id: str, version: str, instance: Any, parameters: Any) -> str:
    """'ipo:c1:<model_id>:<version>:<sha256 of the canonical JSON of [instance, parameters]>'.

    Canonical JSON sorts keys at every level and has no whitespace, so the order of a
    client's fields never splits one row into several entries.
    """
    canonical = orjson.dumps([instance, parameters], option=orjson.OPT_SORT_KEYS)
    return f"{model_prefix(model_id)}{version}:{hashlib.sha256(canonical).hexdigest()}"


def model_prefix(model_id: str) -> str:
    """The prefix every key of ``model_id`` starts with, whatever the version."""
    return f"{KEY_PREFIX}{model_id}:"


class _Flight:
    """One computation of a row in progress; waiters block on ``done``."""

    __slots__ = ("done", "ok", "raw", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.raw: bytes | None = None
        self.value: Any = None


class PredictionCache:
    """Thread-safe; no lock is held during a Redis call or a computation."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        l1_ttl_s: float,
        redis: redis.Redis | None,
        clock: Callable[[], float] = time.monotonic,
        health: RedisHealth | None = None,
        flight_wait_s: float = SINGLE_FLIGHT_WAIT_S,
    ) -> None:
        self._l1 = L1Cache(
            max_entries=max_entries, max_bytes=max_bytes, ttl_s=l1_ttl_s, clock=clock
        )
        self._redis = redis
        self._redis_errors: tuple[type[Exception], ...] = ()
        if redis is not None:
            from redis.exceptions import RedisError

            self._redis_errors = (RedisError,)
        self._health = health or RedisHealth("cache", logger=log, fallback="skipping L2")
        self._flight_wait_s = flight_wait_s
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._counts = dict.fromkeys(
            ("l1_hits", "l2_hits", "misses", "l2_errors", "single_flight_waits"), 0
        )
        self._warned_unencodable = False

    @classmethod
    def from_settings(cls, settings: Settings, redis: redis.Redis | None) -> PredictionCache | None:
        """The cache the settings ask for; None when caching is off."""
        if not settings.cache_enabled:
            return None
        return cls(
            max_entries=settings.cache_l1_entries,
            max_bytes=settings.cache_l1_bytes,
            l1_ttl_s=settings.cache_l1_ttl_s,
            redis=redis,
        )

    # --- lookups and stores --------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The hits only: L1 first, then one MGET for L1's misses; an L2 hit fills L1."""
        hits, _ = self._lookup(list(dict.fromkeys(keys)))
        return hits

    def set_many(self, values: Mapping[str, Any], kind: str = "prediction") -> None:
        """Store in L1 and, in one pipelined round trip, in L2 with the kind's TTL."""
        ttl_s = _ttl_of(kind)
        encoded = self._encode_all(values)
        self._l1.set_many(encoded)
        self._l2_set(encoded, ttl_s)

    def compute_missing(
        self,
        keys: Sequence[str],
        compute: Callable[[list[int]], Sequence[Any]],
        *,
        kind: str = "prediction",
    ) -> tuple[list[Any], dict[str, int]]:
        """The value of every key, in order, computing the misses in one call.

        ``compute`` receives the indexes (into ``keys``) of the rows to compute and
        returns their values in that order. Returns the values and how many rows came
        from L1, from L2, and were missed (computed here or by another thread).
        """
        ttl_s = _ttl_of(kind)
        first: dict[str, int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        found, from_l1 = self._lookup(list(first))
        results = dict(found)
        own, waits = self._claim([key for key in first if key not in found])
        if own:
            self._compute(results, own, first, compute, ttl_s)
        retry = self._await(results, waits)
        if retry:
            self._compute(results, dict.fromkeys(retry), first, compute, ttl_s)
        l1_rows = sum(1 for key in keys if key in from_l1)
        hit_rows = sum(1 for key in keys if key in found)
        counts = {"l1": l1_rows, "l2": hit_rows - l1_rows, "miss": len(keys) - hit_rows}
        return [results[key] for key in keys], counts

    def purge_model(self, model_id: str) -> int:
        """Remove every entry of ``model_id``: this instance's L1, and L2 by SCAN + UNLINK
        in batches (never KEYS, which would block Redis). Other instances' L1 entries
        live out their TTL. Returns how many distinct keys were removed."""
        prefix = model_prefix(model_id)
        l1_only = self._l1.purge_prefix(prefix)
        removed = 0
        if self._redis is None or not self._health.available():
            return len(l1_only)
        pattern = _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"
        cursor = 0
        try:
            while True:
                answer: Any = self._redis.scan(cursor=cursor, match=pattern, count=_SCAN_COUNT)
                cursor, batch = int(answer[0]), list(answer[1])
                if batch:
                    unlinked: Any = self._redis.unlink(*batch)
                    removed += int(unlinked)
                    l1_only.difference_update(_text(key) for key in batch)
                if cursor == 0:
                    break
        except self._redis_errors as exc:
            self._l2_failed(exc)
        else:
            self._health.succeeded()
        return removed + len(l1_only)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
        l1_lookups = counts["l1_hits"] + counts["l2_hits"] + counts["misses"]
        l2_lookups = counts["l2_hits"] + counts["misses"]
        return {
            "l1_hits": counts["l1_hits"],
            "l2_hits": counts["l2_hits"],
            "misses": counts["misses"],
            "l1_hit_ratio": counts["l1_hits"] / l1_lookups if l1_lookups else 0.0,
            "l2_hit_ratio": counts["l2_hits"] / l2_lookups if l2_lookups else 0.0,
            **self._l1.stats(),
            "l2_errors": counts["l2_errors"],
            "single_flight_waits": counts["single_flight_waits"],
        }

    # --- internals -----------------------------------------------------------------------

    def _lookup(self, keys: list[str]) -> tuple[dict[str, Any], set[str]]:
        """Hits of distinct ``keys`` and which of them came from L1."""
        hits = {key: orjson.loads(raw) for key, raw in self._l1.get_many(keys).items()}
        from_l1 = set(hits)
        missing = [key for key in keys if key not in hits]
        if missing:
            hits.update(self._l2_get(missing))
        l2_hits = len(hits) - len(from_l1)
        with self._lock:
            self._counts["l1_hits"] += len(from_l1)
            self._counts["l2_hits"] += l2_hits
            self._counts["misses"] += len(keys) - len(hits)
        return hits, from_l1

    def _l2_get(self, keys: list[str]) -> dict[str, Any]:
        if self._redis is None or not self._health.available():
            return {}
        try:
            answer: Any = self._redis.mget(keys)
        except self._redis_errors as exc:
            self._l2_failed(exc)
            return {}
        if not isinstance(answer, list) or len(answer) != len(keys):
            self._l2_failed(f"MGET answered {answer!r:.100}")
            return {}
        found: dict[str, Any] = {}
        fill: dict[str, bytes] = {}
        bad: list[str] = []
        for key, raw in zip(keys, answer, strict=True):
            if raw is None:
                continue
            try:
                found[key] = orjson.loads(raw)
            except (orjson.JSONDecodeError, TypeError):
                bad.append(key)
                continue
            fill[key] = raw if isinstance(raw, bytes) else str(raw).encode()
        self._l1.set_many(fill)
        if bad:
            self._discard_l2(bad)
            self._l2_failed(f"{len(bad)} value(s) not JSON, first {bad[0]!r}", errors=len(bad))
        else:
            self._health.succeeded()
        return found

    def _discard_l2(self, keys: list[str]) -> None:
        """Drop values that are not ours, so the next lookup after the backoff misses."""
        assert self._redis is not None
        try:
            self._redis.unlink(*keys)
        except self._redis_errors as exc:
            self._l2_failed(exc)

    def _l2_set(self, encoded: Mapping[str, bytes], ttl_s: int) -> None:
        if not encoded or self._redis is None or not self._health.available():
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, raw in encoded.items():
                pipe.set(key, raw, ex=ttl_s)
            pipe.execute()
        except self._redis_errors as exc:
            self._l2_failed(exc)
        else:
            self._health.succeeded()

    def _l2_failed(self, problem: BaseException | str, errors: int = 1) -> None:
        with self._lock:
            self._counts["l2_errors"] += errors
        self._health.failed(problem)

    def _claim(self, missing: list[str]) -> tuple[dict[str, _Flight], list[tuple[str, _Flight]]]:
        """Split the misses into rows this thread computes and rows another thread does."""
        own: dict[str, _Flight] = {}
        waits: list[tuple[str, _Flight]] = []
        with self._lock:
            for key in missing:
                flight = self._flights.get(key)
                if flight is None:
                    own[key] = self._flights[key] = _Flight()
                else:
                    waits.append((key, flight))
            self._counts["single_flight_waits"] += len(waits)
        return own, waits

    def _compute(
        self,
        results: dict[str, Any],
        flights: Mapping[str, _Flight | None],
        first: Mapping[str, int],
        compute: Callable[[list[int]], Sequence[Any]],
        ttl_s: int,
    ) -> None:
        """Compute ``flights``' rows in one call, store them, then wake their waiters
        (stored first, so a thread arriving after the wake-up finds them in L1)."""
        keys = list(flights)
        encoded: dict[str, bytes] = {}
        ok = False
        try:
            computed = compute([first[key] for key in keys])
            if len(computed) != len(keys):
                raise ValueError(f"compute returned {len(computed)} values for {len(keys)} rows")
            values = dict(zip(keys, computed, strict=True))
            encoded = self._encode_all(values)
            self._l1.set_many(encoded)
            results.update(values)
            ok = True
        finally:
            with self._lock:
                for key, flight in flights.items():
                    if flight is None:
                        continue
                    flight.ok, flight.raw, flight.value = ok, encoded.get(key), results.get(key)
                    flight.done.set()
                    if self._flights.get(key) is flight:
                        del self._flights[key]
        self._l2_set(encoded, ttl_s)

    def _await(self, results: dict[str, Any], waits: list[tuple[str, _Flight]]) -> list[str]:
        """Take other threads' results into ``results``; the keys to compute instead."""
        deadline = time.monotonic() + self._flight_wait_s
        retry: list[str] = []
        for key, flight in waits:
            if flight.done.wait(max(0.0, deadline - time.monotonic())) and flight.ok:
                # A fresh copy from the encoding, as from a cache hit.
                results[key] = flight.value if flight.raw is None else orjson.loads(flight.raw)
            else:
                retry.append(key)
        return retry

    def _encode_all(self, values: Mapping[str, Any]) -> dict[str, bytes]:
        """The compact orjson encoding of each value; one that is not JSON is not cached."""
        encoded: dict[str, bytes] = {}
        for key, value in values.items():
            try:
                encoded[key] = orjson.dumps(value)
            except orjson.JSONEncodeError as exc:
                if not self._warned_unencodable:
                    self._warned_unencodable = True
                    log.warning("a value is not JSON and is not cached (%s)", exc)
        return encoded


def _ttl_of(kind: str) -> int:
    try:
        return KIND_TTLS_S[kind]
    except KeyError:
        raise ValueError(f"unknown cache kind {kind!r}; one of {sorted(KIND_TTLS_S)}") from None


def _text(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)
