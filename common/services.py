"""The per-instance collaborators, built once from Settings on first use.

A Cloud Functions instance serves many requests; the store clients, the serving
snapshots and the loaded models live as long as it does. Tests call ``reset_services``
(or ``use_services``) to start from a clean instance.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.audit.payload_log import PayloadLog
from common.audit.trail import AuditLog
from common.backends import Backends, build_backends
from common.backends.redis_client import connect_redis
from common.core import logs
from common.core.config import Settings
from common.core.errors import UnavailableError
from common.experiments.core import Experiments
from common.models.base import Component
from common.monitoring.sampling import DriftSampler
from common.promotion.admission import StagingAdmission
from common.promotion.lifecycle import Lifecycle
from common.registry.records import Registry
from common.security.auth import TokenVerifier
from common.security.crypto import EnvelopeCipher
from common.security.ratelimit import RateLimiter, build_rate_limiter
from common.serving.cache import PredictionCache
from common.serving.hot_keys import HotKeys
from common.serving.pipeline import SnapshotCache, resolve_component
from common.serving.pool import ModelPool
from common.serving.predictor import Predictor

log = logging.getLogger("ipo.services")

SHUTDOWN_FLUSH_S = 6.0
"""What an exit may spend writing statistics: Cloud Run kills an instance 10 s after
SIGTERM, and requests in flight take up to the audit commit timeout (2 s) before it."""


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
    predictor: Predictor
    payload_log: PayloadLog

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

        cipher = EnvelopeCipher(
            backends.keys,
            max_records=settings.data_key_max_records,
            max_age_s=settings.data_key_max_age_s,
        )
        redis = connect_redis(settings)
        audit = AuditLog(
            backends.documents,
            backends.secrets,
            secret_name=settings.audit_secret_name,
            cipher=cipher,
            commit_timeout_s=settings.audit_commit_timeout_s,
        )
        cache = PredictionCache.from_settings(settings, redis)
        hot_keys = HotKeys(backends.documents, cipher)
        drift_sampler = DriftSampler(
            backends.documents,
            rate=settings.drift_sample_rate,
            window_hours=settings.drift_window_hours,
        )

        def shadow_evidence(model_id: str, version: str) -> Mapping[str, Any] | None:
            from common.shadow.report import evidence  # only promotion pays for its imports

            return evidence(backends.documents, cipher, model_id, version)

        lifecycle = Lifecycle(
            registry, backends.documents, components, shadow_evidence=shadow_evidence
        )
        predictor = Predictor(
            snapshots,
            pool,
            experiments=experiments,
            cache=cache,
            hot_keys=hot_keys,
            sampler=drift_sampler,
            max_details=settings.max_error_details,
            admit=StagingAdmission(lifecycle, settings.snapshot_ttl_s),
        )
        return cls(
            settings=settings,
            backends=backends,
            registry=registry,
            verifier=TokenVerifier(settings, backends.secrets),
            snapshots=snapshots,
            pool=pool,
            lifecycle=lifecycle,
            experiments=experiments,
            cipher=cipher,
            audit=audit,
            rate_limiter=build_rate_limiter(settings, redis),
            cache=cache,
            hot_keys=hot_keys,
            drift_sampler=drift_sampler,
            predictor=predictor,
            payload_log=PayloadLog(
                backends.documents, cipher, audit.sampling_key, ttl_s=settings.snapshot_ttl_s
            ),
        )

    def flush_statistics_if_due(self) -> None:
        """Merge request counts and drift samples into the store, at most once a minute per
        instance, on the request that finds the interval elapsed; never fails a request."""
        for flush in (self.hot_keys.flush_if_due, self.drift_sampler.flush_if_due):
            try:
                flush()
            except Exception:
                log.exception("statistics not merged")

    def shutdown(self, budget_s: float = SHUTDOWN_FLUSH_S) -> dict[str, int]:
        """Merge what memory holds within ``budget_s`` and log exactly what was not
        written. Audit entries are never among it: each was stored before its answer."""
        flushing = threading.Thread(target=self._flush_all, name="shutdown", daemon=True)
        flushing.start()
        flushing.join(budget_s)
        account = {
            "audit_entries_committed": self.audit.committed,
            "audit_requests_refused": self.audit.refused,
            "request_counts_not_written": self.hot_keys.unsaved(),
            "drift_rows_not_written": self.drift_sampler.unsaved(),
        }
        lost = any(account[k] for k in account if k != "audit_entries_committed")
        log.log(
            logging.WARNING if lost else logging.INFO,
            "instance stopping: %(audit_entries_committed)d audit entries stored, "
            "%(audit_requests_refused)d requests refused for want of their audit entry, "
            "%(request_counts_not_written)d request counts and %(drift_rows_not_written)d "
            "drift rows not written",
            account,
            extra={"shutdown": account},
        )
        return account

    def _flush_all(self) -> None:
        for flush in (self.hot_keys.flush, self.drift_sampler.flush):
            try:
                flush()
            except Exception as exc:
                log.warning("not written at shutdown: %s", getattr(exc, "message", exc))

    def close(self) -> None:
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
                _stop_with(_services)
    return _services


def _stop_with(services: Services) -> None:
    """Run ``shutdown`` when this process exits. gunicorn, which serves the functions in
    Cloud Functions and on the local gateway, turns SIGTERM into a graceful exit: requests
    in flight finish (each bounded by the audit commit timeout), then exit hooks run."""
    pid = os.getpid()

    def at_exit() -> None:
        if os.getpid() == pid and _services is services:
            services.shutdown()

    atexit.register(at_exit)


def use_services(services: Services | None, *, close_previous: bool = True) -> None:
    """Install (or, with None, drop) the instance's services; for tests and scripts."""
    global _services
    with _lock:
        if close_previous and _services is not None and _services is not services:
            _services.close()
        _services = services


def reset_services() -> None:
    use_services(None)
