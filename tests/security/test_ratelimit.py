"""Token buckets per principal: local, shared through a real redis-server, and the
fall-back to per-instance buckets when Redis fails or answers nonsense."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from common.backends.redis_client import RedisHealth, connect_redis
from common.core.config import Settings
from common.core.errors import RateLimitedError
from common.security.ratelimit import (
    KEY_PREFIX,
    LocalTokenBuckets,
    RateLimiter,
    RedisTokenBuckets,
    build_rate_limiter,
    redis_key,
)
from tests.support.services import RedisServer, closed_port


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def allowed_count(limiter: RateLimiter, subject: str, attempts: int) -> int:
    allowed = 0
    for _ in range(attempts):
        with contextlib.suppress(RateLimitedError):
            limiter.check(subject)
            allowed += 1
    return allowed


def subject() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def redis_settings(url: str, **extra: str) -> Settings:
    return Settings.from_environ({"IPO_REDIS_URL": url, "IPO_REDIS_TIMEOUT_S": "0.5", **extra})


@pytest.fixture
def ratelimit_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """Captured on the logger itself, each record once: the structured-log set-up may
    stop ``ipo`` records from reaching the root logger that caplog listens on."""
    logger = logging.getLogger("ipo.ratelimit")
    monkeypatch.setattr(logger, "propagate", False)
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.addHandler(caplog.handler)
        yield caplog
        logger.removeHandler(caplog.handler)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = connect_redis(redis_settings(redis_server.url))
    assert client is not None
    yield client
    client.close()


# --- local buckets -------------------------------------------------------------------


def test_local_burst_is_exactly_the_limit_then_429() -> None:
    limiter = LocalTokenBuckets(5, clock=FakeClock())
    for _ in range(5):
        limiter.check("alice")
    with pytest.raises(RateLimitedError) as caught:
        limiter.check("alice")
    error = caught.value
    assert error.status == 429
    assert error.headers == {"Retry-After": "12"}  # one token per 60/5 s
    assert error.details == [{"limit_per_minute": 5, "retry_after_s": 12}]
    assert "5 requests per minute" in error.message
    assert "'alice'" in error.message


def test_local_refill_follows_the_clock() -> None:
    clock = FakeClock()
    limiter = LocalTokenBuckets(60, clock=clock)  # one token per second
    assert allowed_count(limiter, "bob", 61) == 60
    clock.now += 0.5
    with pytest.raises(RateLimitedError) as caught:
        limiter.check("bob")
    assert caught.value.headers["Retry-After"] == "1"  # 0.5 s rounds up, never 0
    clock.now += 0.5
    limiter.check("bob")
    with pytest.raises(RateLimitedError):
        limiter.check("bob")
    clock.now += 3600  # refills to the capacity, not beyond
    assert allowed_count(limiter, "bob", 100) == 60


def test_local_subjects_do_not_share_a_bucket() -> None:
    limiter = LocalTokenBuckets(2, clock=FakeClock())
    assert allowed_count(limiter, "alice", 5) == 2
    assert allowed_count(limiter, "bob", 5) == 2


def test_local_forgets_idle_buckets_which_are_full_anyway() -> None:
    clock = FakeClock()
    limiter = LocalTokenBuckets(3, clock=clock, max_subjects=10)
    assert allowed_count(limiter, "alice", 5) == 3
    clock.now += 61
    assert len(limiter._buckets) == 0
    assert allowed_count(limiter, "alice", 5) == 3


def test_build_rate_limiter_follows_the_settings() -> None:
    off = Settings.from_environ({"IPO_RATE_LIMIT_PER_MINUTE": "0"})
    assert build_rate_limiter(off, None) is None
    local = build_rate_limiter(Settings.from_environ({}), None)
    assert isinstance(local, LocalTokenBuckets)
    assert local.per_minute == 1000
    settings = redis_settings(f"redis://127.0.0.1:{closed_port()}/0", IPO_RATE_LIMIT_PER_MINUTE="7")
    shared = build_rate_limiter(settings, connect_redis(settings))  # nothing sent yet
    assert isinstance(shared, RedisTokenBuckets)
    assert isinstance(shared, RateLimiter)
    assert shared.per_minute == 7


def test_connect_redis_is_short_and_never_retries() -> None:
    assert connect_redis(Settings.from_environ({})) is None
    client = connect_redis(redis_settings("redis://127.0.0.1:6399/2"))
    assert client is not None
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.5
    assert kwargs["socket_connect_timeout"] == 0.5
    assert kwargs["db"] == 2
    assert kwargs["protocol"] == 2
    assert kwargs["retry"].get_retries() == 0
    client.close()


def test_redis_health_backs_off_logs_once_per_period_and_resets(
    ratelimit_log: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    logger = logging.getLogger("ipo.ratelimit")
    health = RedisHealth("queue", backoff_s=1, max_backoff_s=3, clock=clock, logger=logger)
    assert health.available()
    health.succeeded()  # nothing to restore: no log
    health.failed(redis.exceptions.TimeoutError("Timeout reading from socket"))
    assert not health.available()
    health.failed("a concurrent failure in the same period")  # counted, not logged
    clock.now += 1
    assert health.available()
    health.failed("still down")
    clock.now += 1.9
    assert not health.available()
    clock.now += 0.1
    health.failed("still down")
    health.failed("still down")
    clock.now += 3  # 1 s, 2 s, then capped at 3 s
    assert health.available()
    health.succeeded()
    health.succeeded()
    health.failed("down again")
    clock.now += 1  # the success reset the backoff to 1 s
    assert health.available()
    assert health.failures == 6
    records = [(r.levelname, r.getMessage()) for r in ratelimit_log.records]
    assert records == [
        (
            "WARNING",
            "Redis queue failed (TimeoutError: Timeout reading from socket); "
            "continuing without Redis for 1.0 s",
        ),
        ("WARNING", "Redis queue failed (still down); continuing without Redis for 2.0 s"),
        ("WARNING", "Redis queue failed (still down); continuing without Redis for 3.0 s"),
        ("INFO", "Redis queue restored"),
        ("WARNING", "Redis queue failed (down again); continuing without Redis for 1.0 s"),
    ]
    assert [getattr(r, "redis_failures", None) for r in ratelimit_log.records] == [1, 3, 4, 5, 6]
    assert {getattr(r, "component", None) for r in ratelimit_log.records} == {"queue"}


def test_redis_key_hashes_unusual_subjects() -> None:
    assert redis_key("alice@example.com") == "ipo:ratelimit:alice@example.com"
    odd = "svc account/1\n*"
    assert redis_key(odd) == KEY_PREFIX + hashlib.sha256(odd.encode()).hexdigest()
    assert redis_key("") == KEY_PREFIX + hashlib.sha256(b"").hexdigest()


# --- shared through a real redis-server ----------------------------------------------


def test_two_instances_share_one_budget(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    other = connect_redis(redis_settings(redis_server.url))
    assert other is not None
    try:
        first = RedisTokenBuckets(redis_client, 6, fallback=LocalTokenBuckets(6))
        second = RedisTokenBuckets(other, 6, fallback=LocalTokenBuckets(6))
        who = subject()
        allowed = sum(
            allowed_count(limiter, who, 1) for _ in range(6) for limiter in (first, second)
        )
        assert allowed == 6
        for limiter in (first, second):
            with pytest.raises(RateLimitedError) as caught:
                limiter.check(who)
            seconds = int(caught.value.headers["Retry-After"])
            assert 1 <= seconds <= 10  # one token per 10 s
            assert caught.value.details == [{"limit_per_minute": 6, "retry_after_s": seconds}]
            assert limiter.stats() == {"redis_failures": 0, "fallback_checks": 0}
        assert allowed_count(first, subject(), 10) == 6  # another principal, another bucket
        ttl_ms = redis_client.pttl(redis_key(who))
        assert 60_000 < ttl_ms <= 65_000
    finally:
        other.close()


def test_redis_bucket_refills_with_the_server_clock(redis_client: redis.Redis) -> None:
    limiter = RedisTokenBuckets(redis_client, 120, fallback=LocalTokenBuckets(120))
    who = subject()
    assert allowed_count(limiter, who, 121) == 120  # two tokens per second
    with pytest.raises(RateLimitedError) as caught:
        limiter.check(who)
    assert caught.value.headers["Retry-After"] == "1"
    time.sleep(0.5)
    assert 1 <= allowed_count(limiter, who, 3) <= 2
    assert limiter.stats()["fallback_checks"] == 0


def test_redis_outage_degrades_to_local_buckets_and_recovers(
    redis_client: redis.Redis,
    redis_server: RedisServer,
    ratelimit_log: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisTokenBuckets(
        redis_client, 3, fallback=LocalTokenBuckets(3), backoff_s=0.1, max_backoff_s=0.2
    )
    who = subject()
    limiter.check(who)
    assert redis_client.exists(redis_key(who))
    redis_server.stop()
    try:
        assert allowed_count(limiter, who, 5) == 3  # the local bucket still starts full
        stats = limiter.stats()
        assert stats["redis_failures"] >= 1
        assert stats["fallback_checks"] == 5
        warnings = [r for r in ratelimit_log.records if r.levelno == logging.WARNING]
        assert 1 <= len(warnings) <= stats["redis_failures"]
        assert getattr(warnings[0], "redis_failures", None) == 1
        assert "checking per instance" in warnings[0].getMessage()
    finally:
        redis_server.restart()
    time.sleep(0.25)  # past the longest backoff
    again = subject()
    limiter.check(again)
    assert redis_client.exists(redis_key(again))
    fallback_checks = limiter.stats()["fallback_checks"]
    assert allowed_count(limiter, again, 5) == 2
    assert limiter.stats()["fallback_checks"] == fallback_checks
    assert any(r.getMessage() == "Redis rate limiting restored" for r in ratelimit_log.records)


def test_unreachable_redis_never_fails_a_request() -> None:
    client = connect_redis(redis_settings(f"redis://127.0.0.1:{closed_port()}/0"))
    assert client is not None
    limiter = RedisTokenBuckets(client, 2, fallback=LocalTokenBuckets(2))
    assert allowed_count(limiter, "alice", 4) == 2
    assert limiter.stats() == {"redis_failures": 1, "fallback_checks": 4}


def test_key_of_the_wrong_type_falls_back(redis_client: redis.Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    redis_client.set(redis_key("alice", prefix), "not a hash")
    limiter = RedisTokenBuckets(redis_client, 2, fallback=LocalTokenBuckets(2), key_prefix=prefix)
    assert allowed_count(limiter, "alice", 3) == 2
    assert limiter.stats() == {"redis_failures": 1, "fallback_checks": 3}
    assert redis_client.get(redis_key("alice", prefix)) == b"not a hash"


@pytest.mark.parametrize(
    "junk", [None, "OK", b"1", [1], [1, 0, 0], [b"1", 0], [1, "0"], [2, 0], [0, -5], [True, 0]]
)
def test_malformed_answer_falls_back(junk: Any) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0")
    limiter = RedisTokenBuckets(client, 2, fallback=LocalTokenBuckets(2))
    limiter._script = lambda **_: junk  # type: ignore[assignment]
    assert allowed_count(limiter, "alice", 3) == 2
    assert limiter.stats() == {"redis_failures": 1, "fallback_checks": 3}


class ScriptedAnswers:
    """Stands in for the Lua script: raises or returns the next answer, counting calls."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, **_: Any) -> Any:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_backoff_doubles_and_resets_on_success(ratelimit_log: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    client = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0")
    limiter = RedisTokenBuckets(
        client, 100, fallback=LocalTokenBuckets(100, clock=clock), clock=clock, max_backoff_s=2
    )
    refused = redis.exceptions.ConnectionError("Connection refused")
    script = ScriptedAnswers(refused, refused, refused, [1, 0], refused, [1, 0])
    limiter._script = script  # type: ignore[assignment]
    timeline = [(0.0, 1), (0.9, 1), (1.0, 2), (2.9, 2), (3.0, 3), (4.9, 3), (5.0, 4), (5.1, 5)]
    start = clock.now
    for at, calls in timeline:
        clock.now = start + at
        limiter.check("alice")
        assert script.calls == calls, at
    # Backoff 1 s, 2 s, then capped at 2 s; the success at 5.0 reset it to 1 s.
    clock.now = start + 6.1
    limiter.check("alice")
    assert script.calls == 6
    warnings = [r for r in ratelimit_log.records if r.levelno == logging.WARNING]
    assert [getattr(w, "redis_failures", None) for w in warnings] == [1, 2, 3, 4]
    assert limiter.stats() == {"redis_failures": 4, "fallback_checks": 7}


def test_local_buckets_stay_bounded_under_distinct_subjects() -> None:
    limiter = LocalTokenBuckets(3, clock=FakeClock(), max_subjects=100)
    for i in range(1000):
        limiter.check(f"subject-{i}")
        assert len(limiter._buckets) <= 100
