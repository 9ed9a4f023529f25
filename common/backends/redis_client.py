"""The one Redis (Memorystore) client of an instance, built from Settings.

Every use of Redis in the platform is an optimisation or a shared limit with a
per-instance fallback, so a slow or absent Redis must cost a request milliseconds, not
seconds: the timeout is short and redis-py's own retries are off, because the caller
degrades instead of waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.config import Settings

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
