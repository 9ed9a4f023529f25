"""The two-level prediction cache: keys, L1 bounds and TTL, L2 shared through a real
redis-server, single flight, purge, and degradation when Redis is down, slow or holds
values that are not JSON."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import pytest
import redis

from common.backends.redis_client import RedisHealth, connect_redis
from common.core.config import Settings
from common.serving.cache import KIND_TTLS_S, PredictionCache, cache_key
from common.serving.l1 import entry_size
from tests.support.services import RedisServer


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Compute:
    """Stands in for a model: value of row i is {"row": i, "score": i / 10}, recording calls."""

    def __init__(self, hold: threading.Event | None = None, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.hold = hold
        self.fail = fail
        self.started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, indexes: list[int]) -> list[Any]:
        with self._lock:
            self.calls.append(list(indexes))
        self.started.set()
        if self.hold is not None:
            assert self.hold.wait(10)
        if self.fail:
            raise RuntimeError("model exploded")
        return [{"row": i, "score": i / 10} for i in indexes]


def model_id() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def keys_for(model: str, count: int, version: str = "1.0.0") -> list[str]:
    return [cache_key(model, version, {"x": i}, {}) for i in range(count)]


def local_cache(**kwargs: Any) -> PredictionCache:
    options: dict[str, Any] = {"max_entries": 100, "max_bytes": 1 << 20, "l1_ttl_s": 60}
    options.update(kwargs)
    return PredictionCache(redis=None, **options)


def quick_health(clock: Callable[[], float] = time.monotonic) -> RedisHealth:
    return RedisHealth(
        "cache",
        backoff_s=0.1,
        max_backoff_s=0.2,
        clock=clock,
        logger=logging.getLogger("ipo.cache"),
    )


def shared_cache(client: redis.Redis, **kwargs: Any) -> PredictionCache:
    options: dict[str, Any] = {"max_entries": 10_000, "max_bytes": 1 << 24, "l1_ttl_s": 60}
    options.update(kwargs)
    options.setdefault("health", quick_health())
    return PredictionCache(redis=client, **options)


def redis_settings(url: str, **extra: str) -> Settings:
    return Settings.from_environ({"IPO_REDIS_URL": url, "IPO_REDIS_TIMEOUT_S": "0.5", **extra})


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = connect_redis(redis_settings(redis_server.url))
    assert client is not None
    yield client
    client.close()


@pytest.fixture
def cache_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """Captured on the logger itself: structured logging may stop ``ipo`` propagation."""
    logger = logging.getLogger("ipo.cache")
    monkeypatch.setattr(logger, "propagate", False)
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.addHandler(caplog.handler)
        yield caplog
        logger.removeHandler(caplog.handler)


# --- keys ----------------------------------------------------------------------------


def test_cache_key_is_canonical_and_names_model_and_version() -> None:
    instance = {"sector": "tech", "metrics": {"b": 2.5, "a": [1, {"z": None, "y": "é"}]}}
    reordered = {"metrics": {"a": [1, {"y": "é", "z": None}], "b": 2.5}, "sector": "tech"}
    params = {"explain": True, "top": 3}
    key = cache_key("risk", "1.2.0", instance, params)
    assert key == cache_key("risk", "1.2.0", reordered, {"top": 3, "explain": True})
    canonical = b'[{"metrics":{"a":[1,{"y":"\xc3\xa9","z":null}],"b":2.5},"sector":"tech"},'
    canonical += b'{"explain":true,"top":3}]'
    assert key == "ipo:c1:risk:1.2.0:" + hashlib.sha256(canonical).hexdigest()
    assert key != cache_key("risk", "1.3.0", instance, params)
    assert key != cache_key("risk", "1.2.0", instance, {"explain": False, "top": 3})
    assert key != cache_key("risk", "1.2.0", instance, {})
    assert key != cache_key("growth", "1.2.0", instance, params)
    assert cache_key("risk", "1.2.0", [1, 2], None) != cache_key("risk", "1.2.0", [2, 1], None)


# --- L1 ------------------------------------------------------------------------------


def test_l1_hit_returns_a_copy_and_misses_are_left_out() -> None:
    cache = local_cache()
    key, other = keys_for(model_id(), 2)
    cache.set_many({key: {"score": 0.25, "tags": ["a"]}})
    hit = cache.get_many([key, other, key])
    assert hit == {key: {"score": 0.25, "tags": ["a"]}}
    hit[key]["tags"].append("changed")
    assert cache.get_many([key]) == {key: {"score": 0.25, "tags": ["a"]}}
    stats = cache.stats()
    assert (stats["l1_hits"], stats["l2_hits"], stats["misses"]) == (2, 0, 1)
    assert stats["l1_hit_ratio"] == pytest.approx(2 / 3)
    assert stats["l1_entries"] == 1
    assert stats["l1_bytes"] == entry_size(key, orjson.dumps({"score": 0.25, "tags": ["a"]}))


def test_l1_entries_expire_with_the_clock() -> None:
    clock = FakeClock()
    cache = local_cache(l1_ttl_s=30, clock=clock)
    (key,) = keys_for(model_id(), 1)
    cache.set_many({key: 1.5})
    clock.now += 29.9
    assert cache.get_many([key]) == {key: 1.5}
    clock.now += 0.1
    assert cache.get_many([key]) == {}
    assert cache.stats()["l1_entries"] == 0
    assert cache.stats()["l1_evictions"] == 0  # expiry is not eviction


def test_l1_is_bounded_by_entries_evicting_the_least_recently_used() -> None:
    cache = local_cache(max_entries=3)
    keys = keys_for(model_id(), 5)
    cache.set_many({k: i for i, k in enumerate(keys[:3])})
    assert cache.get_many([keys[0]]) == {keys[0]: 0}  # now keys[1] is the oldest
    cache.set_many({keys[3]: 3, keys[4]: 4})
    assert set(cache.get_many(keys)) == {keys[0], keys[3], keys[4]}
    stats = cache.stats()
    assert (stats["l1_entries"], stats["l1_evictions"]) == (3, 2)


def test_l1_is_bounded_by_accounted_bytes() -> None:
    value = "x" * 38  # 40 bytes encoded, with the quotes
    keys = keys_for(model_id(), 4)
    one = entry_size(keys[0], orjson.dumps(value))  # every key here has the same length
    cache = local_cache(max_bytes=2 * one + one // 2)
    cache.set_many({k: value for k in keys})
    stats = cache.stats()
    assert (stats["l1_entries"], stats["l1_bytes"], stats["l1_evictions"]) == (2, 2 * one, 2)
    assert set(cache.get_many(keys)) == set(keys[2:])
    (big,) = keys_for(model_id(), 1)
    cache.set_many({big: "y" * 3 * one})  # larger than the whole bound: not kept, evicts nothing
    assert cache.get_many([big]) == {}
    assert cache.stats()["l1_entries"] == 2
    assert cache.stats()["l1_evictions"] == 2


def test_zero_bounds_mean_no_l1() -> None:
    for bounds in ({"max_entries": 0}, {"max_bytes": 0}):
        cache = local_cache(**bounds)
        (key,) = keys_for(model_id(), 1)
        cache.set_many({key: 1})
        assert cache.get_many([key]) == {}
        assert cache.stats()["l1_entries"] == 0


def test_unknown_kind_and_unencodable_values() -> None:
    cache = local_cache()
    key, other = keys_for(model_id(), 2)
    with pytest.raises(ValueError, match="unknown cache kind"):
        cache.set_many({key: 1}, kind="weather")
    cache.set_many({key: {1, 2}, other: 2})  # a set is not JSON: returned, never cached
    assert cache.get_many([key, other]) == {other: 2}
    values, _ = cache.compute_missing([key], lambda idx: [{3}])
    assert values == [{3}]
    assert cache.get_many([key]) == {}


def test_from_settings_follows_the_settings() -> None:
    off = Settings.from_environ({"IPO_CACHE_ENABLED": "false"})
    assert PredictionCache.from_settings(off, None) is None
    on = Settings.from_environ({"IPO_CACHE_L1_ENTRIES": "2", "IPO_CACHE_L1_TTL_S": "5"})
    cache = PredictionCache.from_settings(on, None)
    assert cache is not None
    keys = keys_for(model_id(), 3)
    cache.set_many({k: 1 for k in keys})
    assert cache.stats()["l1_entries"] == 2


# --- compute_missing and single flight -----------------------------------------------


def test_compute_missing_computes_only_the_missing_rows_in_one_call() -> None:
    cache = local_cache()
    keys = keys_for(model_id(), 5)
    cache.set_many({keys[1]: "cached-1", keys[3]: "cached-3"})
    compute = Compute()
    rows = [keys[0], keys[1], keys[2], keys[3], keys[4], keys[0]]  # a repeated row
    values, counts = cache.compute_missing(rows, compute)
    assert compute.calls == [[0, 2, 4]]
    assert values == [
        {"row": 0, "score": 0.0},
        "cached-1",
        {"row": 2, "score": 0.2},
        "cached-3",
        {"row": 4, "score": 0.4},
        {"row": 0, "score": 0.0},
    ]
    assert counts == {"l1": 2, "l2": 0, "miss": 4}
    again, counts = cache.compute_missing(rows, compute)
    assert again == values
    assert counts == {"l1": 6, "l2": 0, "miss": 0}
    assert len(compute.calls) == 1


def test_compute_returning_the_wrong_number_of_values_is_an_error() -> None:
    cache = local_cache()
    keys = keys_for(model_id(), 2)
    with pytest.raises(ValueError, match="1 values for 2 rows"):
        cache.compute_missing(keys, lambda idx: [1])
    values, counts = cache.compute_missing(keys, lambda idx: [i * 2 for i in idx])
    assert values == [0, 2]
    assert counts["miss"] == 2


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def start_threads(
    count: int, target: Callable[[], Any]
) -> tuple[list[threading.Thread], list[Any]]:
    """Each thread appends its result or its exception to the returned list."""
    outcomes: list[Any] = []

    def run() -> None:
        try:
            outcomes.append(target())
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def join(threads: Sequence[threading.Thread]) -> None:
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def test_single_flight_computes_a_shared_missing_row_once() -> None:
    cache = local_cache()
    key = keys_for(model_id(), 1)
    release = threading.Event()
    compute = Compute(hold=release)
    threads, outcomes = start_threads(8, lambda: cache.compute_missing(key, compute))
    try:
        wait_until(lambda: cache.stats()["single_flight_waits"] == 7)
    finally:
        release.set()
    join(threads)
    assert compute.calls == [[0]]
    assert [values for values, _ in outcomes] == [[{"row": 0, "score": 0.0}]] * 8
    assert all(counts == {"l1": 0, "l2": 0, "miss": 1} for _, counts in outcomes)


def test_a_failed_computation_does_not_poison_its_waiters() -> None:
    cache = local_cache()
    key = keys_for(model_id(), 1)
    release = threading.Event()
    failing = Compute(hold=release, fail=True)
    owner, owner_outcome = start_threads(1, lambda: cache.compute_missing(key, failing))
    assert failing.started.wait(5)
    healthy = Compute()
    waiters, outcomes = start_threads(3, lambda: cache.compute_missing(key, healthy))
    try:
        wait_until(lambda: cache.stats()["single_flight_waits"] == 3)
    finally:
        release.set()
    join([*owner, *waiters])
    assert isinstance(owner_outcome[0], RuntimeError)
    assert [values for values, _ in outcomes] == [[{"row": 0, "score": 0.0}]] * 3
    assert 1 <= len(healthy.calls) <= 3
    assert cache.get_many(key) == {key[0]: {"row": 0, "score": 0.0}}


def test_a_waiter_that_times_out_computes_the_row_itself() -> None:
    cache = local_cache(flight_wait_s=0.05)
    key = keys_for(model_id(), 1)
    release = threading.Event()
    slow = Compute(hold=release)
    owner, owner_outcome = start_threads(1, lambda: cache.compute_missing(key, slow))
    try:
        assert slow.started.wait(5)
        fast = Compute()
        values, _ = cache.compute_missing(key, fast)
        assert values == [{"row": 0, "score": 0.0}]
        assert fast.calls == [[0]]
    finally:
        release.set()
    join(owner)
    assert owner_outcome[0][0] == values


# --- L2 through a real redis-server --------------------------------------------------


def test_l2_is_shared_by_instances_and_fills_l1(redis_client: redis.Redis) -> None:
    first, second = shared_cache(redis_client), shared_cache(redis_client)
    model = model_id()
    keys = keys_for(model, 3)
    first.set_many({keys[0]: {"score": 0.5}})
    first.set_many({keys[1]: {"price": 12.5}}, kind="market")
    assert redis_client.get(keys[0]) == orjson.dumps({"score": 0.5})
    assert KIND_TTLS_S["prediction"] - 5 < redis_client.ttl(keys[0]) <= 3600
    assert KIND_TTLS_S["market"] - 5 < redis_client.ttl(keys[1]) <= 300

    assert second.get_many(keys) == {keys[0]: {"score": 0.5}, keys[1]: {"price": 12.5}}
    stats = second.stats()
    assert (stats["l1_hits"], stats["l2_hits"], stats["misses"]) == (0, 2, 1)
    assert stats["l2_hit_ratio"] == pytest.approx(2 / 3)
    assert stats["l1_entries"] == 2  # the L2 hits filled L1
    redis_client.delete(keys[0])
    assert second.get_many([keys[0]]) == {keys[0]: {"score": 0.5}}
    assert second.stats()["l1_hits"] == 1

    compute = Compute()
    values, counts = shared_cache(redis_client).compute_missing(keys, compute)
    assert counts == {"l1": 0, "l2": 1, "miss": 2}
    assert compute.calls == [[0, 2]]
    assert values[1] == {"price": 12.5}
    assert redis_client.get(keys[2]) == orjson.dumps({"row": 2, "score": 0.2})
    assert second.stats()["l2_errors"] == 0


def test_purge_model_removes_only_that_models_entries(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed, kept = model_id(), model_id()
    lookalike = doomed + "x"  # a model id that merely starts with the purged one
    doomed_keys = keys_for(doomed, 1200, "1.0.0") + keys_for(doomed, 30, "2.0.0")
    kept_keys = keys_for(kept, 20) + keys_for(lookalike, 20)
    writer = shared_cache(redis_client, max_entries=0)
    writer.set_many(dict.fromkeys(doomed_keys + kept_keys, 1))
    cache = shared_cache(redis_client)
    local_only = cache_key(doomed, "3.0.0", {"local": True}, {})
    cache.set_many({local_only: 2})
    assert len(cache.get_many([*doomed_keys[:10], *kept_keys])) == 50  # some of each in L1

    scans: list[int] = []
    real_scan = redis_client.scan

    def counting_scan(*args: Any, **kwargs: Any) -> Any:
        scans.append(kwargs.get("count", 0))
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(redis_client, "scan", counting_scan)
    assert cache.purge_model(doomed) == len(doomed_keys) + 1
    assert len(scans) > 1
    assert set(scans) == {500}
    assert not any(redis_client.exists(k) for k in [*doomed_keys[::50], local_only])
    assert list(redis_client.scan_iter(match=f"ipo:c1:{doomed}:*")) == []
    assert cache.get_many([*doomed_keys[:10], local_only]) == {}
    assert cache.stats()["l1_entries"] == len(kept_keys)
    assert sum(redis_client.exists(k) for k in kept_keys) == len(kept_keys)
    assert cache.purge_model(doomed) == 0
    assert local_cache().purge_model(doomed) == 0


def test_redis_outage_computes_logs_once_and_recovers(
    redis_client: redis.Redis, redis_server: RedisServer, cache_log: pytest.LogCaptureFixture
) -> None:
    cache = shared_cache(redis_client)
    model = model_id()
    before = keys_for(model, 1, "0.9.0")
    cache.set_many({before[0]: "stored"})
    compute = Compute()
    redis_server.stop()
    try:
        keys = keys_for(model, 3)
        values, counts = cache.compute_missing(keys, compute)
        assert values == [{"row": i, "score": i / 10} for i in range(3)]
        assert counts == {"l1": 0, "l2": 0, "miss": 3}
        errors = cache.stats()["l2_errors"]
        assert errors >= 1
        values, counts = cache.compute_missing(keys_for(model, 2, "2.0.0"), compute)
        assert counts["miss"] == 2  # within the backoff: Redis not even tried
        assert cache.stats()["l2_errors"] == errors
        assert cache.get_many(before) == {before[0]: "stored"}  # L1 still serves
        warnings = [r for r in cache_log.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert getattr(warnings[0], "redis_failures", None) == 1
        assert getattr(warnings[0], "component", None) == "cache"
        assert "Redis cache failed (ConnectionError" in warnings[0].getMessage()
    finally:
        redis_server.restart()
    time.sleep(0.25)  # past the longest backoff
    fresh = keys_for(model, 1, "3.0.0")
    cache.compute_missing(fresh, compute)
    assert redis_client.get(fresh[0]) == orjson.dumps({"row": 0, "score": 0.0})
    assert shared_cache(redis_client).get_many(fresh) == {fresh[0]: {"row": 0, "score": 0.0}}
    assert any(r.getMessage() == "Redis cache restored" for r in cache_log.records)


@pytest.fixture
def silent_redis() -> Iterator[redis.Redis]:
    """A port that accepts connections and never answers: a Redis too slow to wait for."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    client = connect_redis(Settings.from_environ({"IPO_REDIS_URL": f"redis://127.0.0.1:{port}/0"}))
    assert client is not None
    try:
        yield client
    finally:
        client.close()
        listener.close()


def test_slow_redis_costs_one_timeout_then_is_skipped(
    silent_redis: redis.Redis, cache_log: pytest.LogCaptureFixture
) -> None:
    cache = PredictionCache(max_entries=10, max_bytes=10_000, l1_ttl_s=60, redis=silent_redis)
    keys = keys_for(model_id(), 2)
    started = time.monotonic()
    values, counts = cache.compute_missing(keys, Compute())
    assert values == [{"row": 0, "score": 0.0}, {"row": 1, "score": 0.1}]
    assert counts == {"l1": 0, "l2": 0, "miss": 2}
    assert cache.stats()["l2_errors"] == 1  # MGET timed out; the SET was skipped
    cache.set_many({keys[0]: 1})
    assert cache.get_many(keys_for(model_id(), 1)) == {}
    assert cache.purge_model("anything") == 0
    assert cache.stats()["l2_errors"] == 1  # all within the 1 s backoff
    assert time.monotonic() - started < 5
    (warning,) = [r for r in cache_log.records if r.levelno == logging.WARNING]
    assert "Timeout" in warning.getMessage()
    assert "skipping L2 for 1.0 s" in warning.getMessage()


def test_values_that_are_not_json_are_misses_and_are_dropped(
    redis_client: redis.Redis, cache_log: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cache = shared_cache(redis_client, health=quick_health(clock))
    keys = keys_for(model_id(), 3)
    redis_client.set(keys[0], b"\xff\xfe not json", ex=60)
    redis_client.set(keys[1], orjson.dumps({"row": 1, "score": 0.1}), ex=60)
    compute = Compute()
    values, counts = cache.compute_missing(keys, compute)
    assert values == [{"row": i, "score": i / 10} for i in range(3)]
    assert compute.calls == [[0, 2]]
    assert counts == {"l1": 0, "l2": 1, "miss": 2}
    assert cache.stats()["l2_errors"] == 1
    assert not redis_client.exists(keys[0])
    assert any("not JSON" in r.getMessage() for r in cache_log.records)

    clock.now += 1  # past the backoff: L2 is written again
    cache.set_many({keys[0]: "fixed"})
    assert redis_client.get(keys[0]) == b'"fixed"'


def test_an_answer_of_the_wrong_shape_is_an_error(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = shared_cache(redis_client)
    monkeypatch.setattr(redis_client, "mget", lambda keys: [b"1"])
    keys = keys_for(model_id(), 2)
    values, counts = cache.compute_missing(keys, Compute())
    assert values == [{"row": 0, "score": 0.0}, {"row": 1, "score": 0.1}]
    assert counts == {"l1": 0, "l2": 0, "miss": 2}
    assert cache.stats()["l2_errors"] == 1
