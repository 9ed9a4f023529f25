"""The per-instance collaborators, built once from Settings on first use.

A Cloud Functions instance serves many requests; the store clients, the serving
snapshots and the loaded models live as long as it does. Tests call ``reset_services``
(or ``use_services``) to start from a clean instance.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from common import logs
from common.audit import AuditLog
from common.auth import TokenVerifier
from common.backends import Backends, build_backends
from common.backends.redis_client import connect_redis
from common.cache import PredictionCache
from common.config import Settings
from common.crypto import EnvelopeCipher
from common.drift_sampling import DriftSampler
from common.errors import UnavailableError
from common.experiments import Experiments
from common.hot_keys import HotKeys
from common.lifecycle import Lifecycle
from common.models.base import Component
from common.models.pool import ModelPool
from common.ratelimit import RateLimiter, build_rate_limiter
from common.registry import Registry
from common.serving import SnapshotCache, resolve_component

log = logging.getLogger("ipo.services")


@dataclass(frozen=True)
class Services:
    settings: Settings
    backends: Backends
    registry: Registry
    verifier: TokenVerifier
    snapshots: SnapshotCache
    pool: ModelPool
    lifecycle: Lifecycle
    experiments: Experiments
    cipher: EnvelopeCipher
    audit: AuditLog
    rate_limiter: RateLimiter | None
    cache: PredictionCache | None
    hot_keys: HotKeys
    drift_sampler: DriftSampler

    @classmethod
    def build(cls, settings: Settings, backends: Backends | None = None) -> Services:
        backends = backends or build_backends(settings)
        registry = Registry(backends.documents, backends.artifacts)
        experiments = Experiments(
            backends.documents, registry, retention_days=settings.retention_days
        )
        snapshots = SnapshotCache(registry, settings.snapshot_ttl_s, experiments=experiments)
        pool = ModelPool(registry, settings.model_pool_size)

        def components(ids: Mapping[str, str]) -> dict[str, Component]:
            return {role: resolve_component(m, snapshots, pool) for role, m in ids.items()}

        cipher = EnvelopeCipher(backends.keys)
        redis = connect_redis(settings)
        audit = AuditLog(
            backends.documents,
            backends.secrets,
            secret_name=settings.audit_secret_name,
            cipher=cipher,
            queue_size=settings.audit_queue_size,
        )
        return cls(
            settings=settings,
            backends=backends,
            registry=registry,
            verifier=TokenVerifier(settings, backends.secrets),
            snapshots=snapshots,
            pool=pool,
            lifecycle=Lifecycle(registry, backends.documents, components),
            experiments=experiments,
            cipher=cipher,
            audit=audit,
            rate_limiter=build_rate_limiter(settings, redis),
            cache=PredictionCache.from_settings(settings, redis),
            hot_keys=HotKeys(backends.documents, cipher),
            drift_sampler=DriftSampler(
                backends.documents,
                rate=settings.drift_sample_rate,
                window_hours=settings.drift_window_hours,
            ),
        )

    def close(self) -> None:
        self.audit.close()
        self.backends.close()


_services: Services | None = None
_lock = threading.Lock()


def get_services() -> Services:
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                try:
                    settings = Settings.from_environ()
                except ValueError as exc:
                    logs.configure()
                    log.error("%s", exc)
                    raise UnavailableError("the service is misconfigured; see its logs") from None
                logs.configure(settings.log_level, settings.gcp_project)
                _services = Services.build(settings)
    return _services


def use_services(services: Services | None, *, close_previous: bool = True) -> None:
    """Install (or, with None, drop) the instance's services; for tests and scripts."""
    global _services
    with _lock:
        if close_previous and _services is not None and _services is not services:
            _services.close()
        _services = services


def reset_services() -> None:
    use_services(None)
