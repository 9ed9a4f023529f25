"""Per-principal rate limits: a token bucket per subject (OWASP API4, unrestricted
resource consumption).

Each principal gets a bucket of ``per_minute`` tokens refilled continuously, so a client
may burst up to the limit and then proceeds at the sustained rate. Limits are per
principal, not per address, because callers behind one gateway share addresses.

With Redis configured the buckets live there, updated by one atomic Lua script, so N
function instances share one budget instead of granting N times the limit. Redis is an
optimisation of the limit, never a dependency of the request: when it fails or answers
nonsense, each instance checks its own bucket until Redis is back.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cachetools import TTLCache

from common.backends.redis_client import RedisHealth
from common.core.config import Settings
from common.core.errors import RateLimitedError, UnavailableError

if TYPE_CHECKING:
    import redis

log = logging.getLogger("ipo.ratelimit")

KEY_PREFIX = "ipo:ratelimit:"
_PLAIN_SUBJECT = re.compile(r"[A-Za-z0-9_.@:+-]+")
_KEY_TTL_MS = 65_000
"""A bucket untouched for 60 s is full again; the margin covers clock steps."""

_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * per_ms)
  ts = now
end
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return {allowed, retry_ms}
"""
"""Refills with the Redis server's clock, so the instances' clocks never matter."""


@runtime_checkable
class RateLimiter(Protocol):
    def check(self, subject: str) -> None:
        """Take one token of ``subject``'s bucket; RateLimitedError (429) when empty."""

    def forget(self, subject: str) -> int:
        """Delete ``subject``'s bucket (erasure); how many stores held one."""


def rate_limited(subject: str, per_minute: int, wait_s: float) -> RateLimitedError:
    """The 429, telling the client how long until one request would succeed."""
    seconds = max(1, math.ceil(wait_s - 1e-9))
    return RateLimitedError(
        f"rate limit of {per_minute} requests per minute exceeded for {subject!r}",
        headers={"Retry-After": str(seconds)},
        details=[{"limit_per_minute": per_minute, "retry_after_s": seconds}],
    )


def _check_per_minute(per_minute: int) -> None:
    if per_minute < 1:
        raise ValueError(f"per_minute must be at least 1, got {per_minute}")


class LocalTokenBuckets:
    """Buckets of this instance only: exact for one instance, the fallback for many."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_subjects: int = 100_000,
    ) -> None:
        _check_per_minute(per_minute)
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        # A bucket untouched for 60 s has refilled completely, so forgetting it is exact.
        self._buckets: TTLCache[str, tuple[float, float]] = TTLCache(
            maxsize=max_subjects, ttl=60, timer=clock
        )
        self._lock = threading.Lock()

    def check(self, subject: str) -> None:
        with self._lock:
            now = self._clock()
            tokens, stamp = self._buckets.get(subject, (float(self.per_minute), now))
            if now > stamp:
                tokens = min(float(self.per_minute), tokens + (now - stamp) * self._rate)
                stamp = now
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[subject] = (tokens, stamp)
        if not allowed:
            raise rate_limited(subject, self.per_minute, (1.0 - tokens) / self._rate)

    def forget(self, subject: str) -> int:
        with self._lock:
            return 1 if self._buckets.pop(subject, None) is not None else 0


def redis_key(subject: str, prefix: str = KEY_PREFIX) -> str:
    """The bucket's key; a subject with unusual characters is hashed so it cannot
    break out of the key space or make keys unreadable in ``redis-cli``."""
    if not _PLAIN_SUBJECT.fullmatch(subject):
        subject = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()
    return prefix + subject


class RedisTokenBuckets:
    """Buckets shared by every instance through Redis, with a per-instance fallback.

    A Redis error or a malformed answer never fails a request: that check (and every
    check until a backoff expires) uses ``fallback`` instead. The backoff starts at
    ``backoff_s``, doubles up to ``max_backoff_s`` and resets on the first success, so
    a Redis outage costs one timeout per backoff period, not one per request.
    """

    def __init__(
        self,
        client: redis.Redis,
        per_minute: int,
        *,
        fallback: LocalTokenBuckets,
        clock: Callable[[], float] = time.monotonic,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        key_prefix: str = KEY_PREFIX,
    ) -> None:
        from redis.exceptions import RedisError

        _check_per_minute(per_minute)
        self.per_minute = per_minute
        self._redis_error = RedisError
        self._client = client
        self._script = client.register_script(_BUCKET_LUA)
        self._args = (per_minute, repr(per_minute / 60_000.0), _KEY_TTL_MS)
        self._fallback = fallback
        self._key_prefix = key_prefix
        self._health = RedisHealth(
            "rate limiting",
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            clock=clock,
            logger=log,
            fallback="checking per instance",
        )
        self._lock = threading.Lock()
        self._fallback_checks = 0

    def check(self, subject: str) -> None:
        if not self._health.available():
            self._check_fallback(subject)
            return
        try:
            answer = self._script(keys=[redis_key(subject, self._key_prefix)], args=self._args)
        except self._redis_error as exc:
            self._health.failed(exc)
            self._check_fallback(subject)
            return
        verdict = _parse(answer)
        if verdict is None:
            self._health.failed(f"unexpected answer {answer!r:.100}")
            self._check_fallback(subject)
            return
        self._health.succeeded()
        allowed, retry_after_ms = verdict
        if not allowed:
            raise rate_limited(subject, self.per_minute, retry_after_ms / 1000.0)

    def forget(self, subject: str) -> int:
        """Delete the shared bucket (and this instance's fallback one). Redis being down
        is an error here: an erasure must not report success it did not achieve."""
        try:
            removed = int(self._client.delete(redis_key(subject, self._key_prefix)))
        except self._redis_error as exc:
            raise UnavailableError(f"Redis refused the erasure of a rate bucket: {exc}") from None
        return removed + self._fallback.forget(subject)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "redis_failures": self._health.failures,
                "fallback_checks": self._fallback_checks,
            }

    def _check_fallback(self, subject: str) -> None:
        with self._lock:
            self._fallback_checks += 1
        self._fallback.check(subject)


def _parse(answer: Any) -> tuple[bool, int] | None:
    """``(allowed, retry_after_ms)`` from the script's answer; None unless well formed."""
    if not isinstance(answer, list) or len(answer) != 2:
        return None
    allowed, retry_after_ms = answer
    if type(allowed) is not int or type(retry_after_ms) is not int:
        return None
    if allowed not in (0, 1) or retry_after_ms < 0:
        return None
    return allowed == 1, retry_after_ms


def build_rate_limiter(settings: Settings, redis_client: redis.Redis | None) -> RateLimiter | None:
    """The limiter the settings ask for: None when off, shared when Redis is configured."""
    per_minute = settings.rate_limit_per_minute
    if per_minute == 0:
        return None
    local = LocalTokenBuckets(per_minute)
    if redis_client is None:
        return local
    return RedisTokenBuckets(redis_client, per_minute, fallback=local)
