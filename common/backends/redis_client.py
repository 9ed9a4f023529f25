"""The one Redis (Memorystore) client of an instance, built from Settings.

Every use of Redis in the platform is an optimisation or a shared limit with a
per-instance fallback, so a slow or absent Redis must cost a request milliseconds, not
seconds: the timeout is short and redis-py's own retries are off, because the caller
degrades instead of waiting. ``RedisHealth`` is that degradation's bookkeeping, shared by
every user of Redis (rate limits, prediction cache).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from common.core.config import Settings

if TYPE_CHECKING:
    import redis


def connect_redis(settings: Settings) -> redis.Redis | None:
    """A client for ``settings.redis_url``, or None when no Redis is configured.

    Nothing is sent yet: the connection opens on first use, so an unreachable Redis
    does not stop an instance from starting.
    """
    if not settings.redis_url:
        return None
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        protocol=2,
    )


class RedisHealth:
    """Whether one use of Redis should be tried now: a small circuit breaker.

    After a failure Redis is left alone for ``backoff_s``, doubling up to
    ``max_backoff_s`` while failures continue, so an outage costs one timeout per backoff
    period instead of one per request. The first success closes the breaker again. A
    warning is logged when a backoff period starts, never more often, so an outage cannot
    flood the log; ``failures`` counts every failure.
    """

    def __init__(
        self,
        name: str,
        *,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        fallback: str = "continuing without Redis",
    ) -> None:
        self.name = name
        self._initial_backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._log = logger or logging.getLogger("ipo.redis")
        self._fallback = fallback
        self._lock = threading.Lock()
        self._backoff_s = backoff_s
        self._retry_at = -math.inf
        self._degraded = False
        self.failures = 0

    def available(self) -> bool:
        """False while backing off: the caller skips Redis and uses its fallback."""
        return self._clock() >= self._retry_at

    def failed(self, problem: BaseException | str) -> None:
        """Count a failure; the first one after a backoff period starts the next period."""
        reason = problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
        with self._lock:
            self.failures += 1
            failures = self.failures
            now = self._clock()
            if now < self._retry_at:
                return  # a concurrent call already started this backoff period
            backoff = self._backoff_s
            self._retry_at = now + backoff
            self._backoff_s = min(backoff * 2, self._max_backoff_s)
            self._degraded = True
        self._log.warning(
            "Redis %s failed (%s); %s for %.1f s",
            self.name,
            reason,
            self._fallback,
            backoff,
            extra={"redis_failures": failures, "component": self.name},
        )

    def succeeded(self) -> None:
        """Reset the backoff after a failure, saying once that Redis is back."""
        if not self._degraded:
            return
        with self._lock:
            recovered = self._degraded
            self._degraded = False
            self._backoff_s = self._initial_backoff_s
            self._retry_at = -math.inf
            failures = self.failures
        if recovered:
            self._log.info(
                "Redis %s restored",
                self.name,
                extra={"redis_failures": failures, "component": self.name},
            )
