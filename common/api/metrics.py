"""Prometheus metrics of the local gateway: requests, latency and the prediction cache.

In the cloud the same numbers come from the structured request lines through log-based
metrics, so nothing is recorded unless a server turns it on (``enable``): the local
gateway does. gunicorn runs several worker processes, so with
``PROMETHEUS_MULTIPROC_DIR`` set (``scripts/serve.py`` sets it) every worker writes its
samples to that folder and ``/metrics`` reports the sum over workers.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.serving.cache import PredictionCache

_enabled = False
CACHE_GAUGES_EVERY_S = 1.0
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def enable() -> None:
    global _enabled
    _enabled = True


def enabled() -> bool:
    return _enabled


class _Metrics:
    """Created on first use: prometheus-client reads the multiprocess setting then."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "ipo_requests",
            "Requests answered, by function, operation and status.",
            ["function", "operation", "status"],
        )
        self.latency = Histogram(
            "ipo_request_latency_seconds",
            "Time from request to response, by function and operation.",
            ["function", "operation"],
            buckets=LATENCY_BUCKETS_S,
        )
        self.cache_rows = Counter(
            "ipo_cache_rows",
            "Prediction rows by where they came from (l1, l2, miss = computed).",
            ["model_id", "level"],
        )
        self.cache_entries = Gauge(
            "ipo_cache_l1_entries", "Rows held in L1.", multiprocess_mode="livesum"
        )
        self.cache_bytes = Gauge(
            "ipo_cache_l1_bytes",
            "Bytes L1 accounts for: keys, encoded values and per-entry overhead.",
            multiprocess_mode="livesum",
        )
        self.cache_evictions = Gauge(
            "ipo_cache_l1_evictions",
            "Rows evicted from L1 to respect its bounds.",
            multiprocess_mode="livesum",
        )
        self.cache_gauges_due = 0.0
        self.cache_l2_errors = Gauge(
            "ipo_cache_l2_errors",
            "Redis calls of the cache that failed or timed out.",
            multiprocess_mode="livesum",
        )


_metrics: _Metrics | None = None


_lock = threading.Lock()


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _lock:  # two first requests at once must not register the metrics twice
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def observe_request(
    *,
    function: str,
    operation: str,
    status: int,
    latency_s: float,
    labels: dict[str, Any],
    cache: PredictionCache | None,
) -> None:
    if not _enabled:
        return
    metrics = _get()
    metrics.requests.labels(function, operation, str(status)).inc()
    metrics.latency.labels(function, operation).observe(latency_s)
    levels = labels.get("cache_rows")
    if levels and cache is not None:
        model_id = str(labels.get("model_id"))
        for level, count in levels.items():
            if count:
                metrics.cache_rows.labels(model_id, level).inc(count)
        now = time.monotonic()
        if now < metrics.cache_gauges_due:
            return
        metrics.cache_gauges_due = now + CACHE_GAUGES_EVERY_S
        stats = cache.stats()
        metrics.cache_entries.set(stats["l1_entries"])
        metrics.cache_bytes.set(stats["l1_bytes"])
        metrics.cache_evictions.set(stats["l1_evictions"])
        metrics.cache_l2_errors.set(stats["l2_errors"])


def exposition() -> tuple[bytes, str]:
    """The Prometheus text page and its content type, summed over worker processes."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    _get()
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
