"""The prediction pipeline, readable top to bottom.

resolve the serving snapshot -> validate the batch against the model's schema -> take the
loaded model from the pool -> one vectorised predict -> the response.

The registry is not read on every request: each model's serving snapshot (production
version and its record) is kept in memory for ``snapshot_ttl_s`` and reloaded after that;
a reload that finds the same generation keeps the record it has.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import Field, TypeAdapter

from common.core.errors import NotFoundError, ServiceError, UnavailableError
from common.core.validation import StrictModel, validate
from common.experiments.core import Experiment, Experiments
from common.models import runtime_class
from common.models.base import Component
from common.monitoring.sampling import DriftSampler
from common.registry.records import ModelVersion, Registry, utcnow
from common.serving.cache import PredictionCache, cache_key
from common.serving.hot_keys import HotKeys
from common.serving.pool import ModelPool

log = logging.getLogger("ipo.serving")

MAX_INSTANCES = 1000


class PredictRequest(StrictModel):
    """The Vertex AI request shape; each instance is checked by the model's own schema."""

    instances: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_INSTANCES)
    parameters: dict[str, Any] = Field(default_factory=dict)


PREDICT_REQUEST = TypeAdapter(PredictRequest)


@dataclass(frozen=True)
class ServingSnapshot:
    model_id: str
    kind: str
    generation: int
    production: ModelVersion | None
    expires_at: float
    canary: ModelVersion | None = None
    canary_percentage: int = 0
    experiment: Experiment | None = None
    experiment_versions: Mapping[str, ModelVersion] = field(default_factory=dict)

    def route(self, subject: str, now: str = "") -> tuple[ModelVersion | None, str, str | None]:
        """The version serving ``subject``, its variant and experiment: a running experiment
        first, else a canary's sticky share of users (by a hash of model and user, never by
        request), else production."""
        experiment = self.experiment
        if experiment is not None and experiment.is_running(now or utcnow()):
            variant = experiment.assign(subject)
            return self.experiment_versions[variant], variant, experiment.experiment_id
        if (
            self.canary is not None
            and bucket(self.model_id, subject) < self.canary_percentage * 100
        ):
            return self.canary, "canary", None
        return self.production, "production", None


BUCKETS = 10_000


def bucket(*parts: str) -> int:
    """A stable position in [0, 10000) for a key: the same user always lands in the same
    place, so raising a share only adds users and never moves one back."""
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


class SnapshotCache:
    OUTAGE_RETRY_S = 5.0
    """After a failed reload, how long the last snapshot serves before the store is tried
    again: one caller per model pays for an outage, not every request."""

    def __init__(
        self,
        registry: Registry,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        experiments: Experiments | None = None,
    ) -> None:
        self._registry = registry
        self._experiments = experiments
        self._ttl_s = ttl_s
        self._clock = clock
        self._snapshots: dict[str, ServingSnapshot] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, model_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(model_id, threading.Lock())

    def get(self, model_id: str) -> ServingSnapshot:
        snapshot = self._snapshots.get(model_id)
        if snapshot is not None and self._clock() < snapshot.expires_at:
            return snapshot
        with self._lock_for(model_id):  # one reload per model; its other callers wait for it
            now = self._clock()
            snapshot = self._snapshots.get(model_id)
            if snapshot is not None and now < snapshot.expires_at:
                return snapshot
            try:
                fresh = self._load(model_id, snapshot, now)
            except UnavailableError:
                if snapshot is None:
                    raise
                log.warning(
                    "registry unreachable; serving the last known snapshot",
                    extra={"model_id": model_id, "generation": snapshot.generation},
                )
                fresh = replace(snapshot, expires_at=now + min(self._ttl_s, self.OUTAGE_RETRY_S))
            self._snapshots[model_id] = fresh
            return fresh

    def _load(self, model_id: str, previous: ServingSnapshot | None, now: float) -> ServingSnapshot:
        model = self._registry.get_model(model_id)
        experiment = self._experiments.active_for(model_id) if self._experiments else None
        versions: Mapping[str, ModelVersion] = {}
        if experiment is not None:
            same = previous is not None and previous.experiment == experiment
            versions = (
                previous.experiment_versions
                if same and previous is not None
                else {
                    name: self._registry.get_version(model_id, version)
                    for name, version in experiment.variants.items()
                }
            )
        if previous is not None and previous.generation == model.generation:
            return replace(
                previous,
                expires_at=now + self._ttl_s,
                experiment=experiment,
                experiment_versions=versions,
            )
        production = canary = None
        if model.production_version is not None:
            production = self._registry.get_version(model_id, model.production_version)
        if model.canary_version is not None and model.canary_percentage > 0:
            canary = self._registry.get_version(model_id, model.canary_version)
        return ServingSnapshot(
            model_id=model_id,
            kind=model.kind,
            generation=model.generation,
            production=production,
            expires_at=now + self._ttl_s,
            canary=canary,
            canary_percentage=model.canary_percentage if canary else 0,
            experiment=experiment,
            experiment_versions=versions,
        )

    def invalidate(self, model_id: str | None = None) -> None:
        if model_id is None:
            self._snapshots.clear()
        else:
            self._snapshots.pop(model_id, None)


def resolve_component(model_id: str, snapshots: SnapshotCache, pool: ModelPool) -> Component:
    """A combined model is served at its own production version, loaded in-process.

    A component that is missing is the deployment's fault, not the caller's: 503.
    """
    try:
        record = snapshots.get(model_id).production
    except NotFoundError:
        record = None
    if record is None:
        raise UnavailableError(
            f"component model {model_id!r} has no production version", retry_after_s=30
        )
    return Component(model_id=model_id, version=record.version, runtime=pool.get(record).runtime)


def run_version(
    record: ModelVersion,
    request: PredictRequest,
    *,
    snapshots: SnapshotCache,
    pool: ModelPool,
    cache: PredictionCache | None,
    max_details: int = 100,
) -> tuple[list[Any], dict[str, int] | None, list[str] | None]:
    """One version's predictions for a request, through the cache when there is one:
    (predictions, rows per cache level, cache keys)."""
    runtime = runtime_class(record.kind)  # a kind unknown to this code is a deployment fault
    instances = validate(
        runtime.instances_adapter(),
        request.instances,
        prefix=("instances",),
        max_details=max_details,
    )
    parameters = validate(
        runtime.parameters_adapter(),
        request.parameters,
        prefix=("parameters",),
        max_details=max_details,
    )
    loaded = pool.get(record)
    components = {
        role: resolve_component(component_id, snapshots, pool)
        for role, component_id in loaded.runtime.components().items()
    }

    def compute(rows: list[int]) -> list[Any]:
        batch = instances if len(rows) == len(instances) else [instances[i] for i in rows]
        if components:
            return list(loaded.runtime.predict_composite(batch, parameters, components))
        return list(loaded.runtime.predict(batch, parameters))

    if cache is None:
        return compute(list(range(len(instances)))), None, None
    # A composite's output depends on its components' versions as well as its own.
    version = "+".join(
        [record.version, *(f"{c.model_id}@{c.version}" for c in components.values())]
    )
    keys = [
        cache_key(record.model_id, version, row, request.parameters) for row in request.instances
    ]
    predictions, levels = cache.compute_missing(keys, compute)
    return predictions, levels, keys


def predict(
    *,
    model_id: str,
    request: PredictRequest,
    snapshots: SnapshotCache,
    pool: ModelPool,
    request_id: str,
    subject: str = "",
    max_details: int = 100,
    labels: dict[str, Any] | None = None,
    experiments: Experiments | None = None,
    cache: PredictionCache | None = None,
    hot_keys: HotKeys | None = None,
    sampler: DriftSampler | None = None,
) -> dict[str, Any]:
    snapshot = snapshots.get(model_id)
    at = ""  # the time is read only for a model with an experiment, never per prediction
    if snapshot.experiment is not None:
        at = experiments.now() if experiments is not None else utcnow()
    record, variant, experiment_id = snapshot.route(subject, at)
    routed = snapshot.experiment if experiment_id is not None else None
    if (
        routed is not None
        and experiments is not None
        and not _still_serving(experiments, routed, at)
    ):
        # stopped (or replaced) since this instance's snapshot: the recorded times win
        snapshots.invalidate(model_id)
        snapshot = snapshots.get(model_id)
        record, variant, experiment_id = snapshot.route(subject, at)
    if record is None:
        raise NotFoundError(f"model {model_id!r} has no production version; promote one first")

    predictions, levels, keys = run_version(
        record, request, snapshots=snapshots, pool=pool, cache=cache, max_details=max_details
    )
    if hot_keys is not None and keys is not None:
        hot_keys.record(model_id, keys, request.instances, request.parameters)
    if sampler is not None:
        try:  # monitoring never fails a prediction
            sampler.observe(
                model_id, record.version, record.drift_baseline, request.instances, predictions
            )
        except Exception:
            log.warning("drift sample not recorded", exc_info=True, extra={"model_id": model_id})

    exposure_id = None
    if experiment_id is not None and experiments is not None and snapshot.experiment:
        try:  # the prediction stands even if its exposure cannot be recorded
            exposure_id = uuid.uuid4().hex  # the server's, never the caller's X-Request-Id
            experiments.expose(snapshot.experiment, exposure_id, variant, subject, at)
        except ServiceError as exc:
            exposure_id = None
            log.warning(
                "experiment exposure not recorded; its outcome cannot be joined",
                extra={"experiment_id": experiment_id, "error": exc.message},
            )
    if labels is not None:
        labels.update(
            model_id=model_id,
            model_version=record.version,
            variant=variant,
            instances=len(predictions),
        )
        if levels is not None:
            labels.update(cache=_cache_label(levels), cache_rows=levels)
    return {
        "predictions": predictions,
        "model_id": model_id,
        "model_version": record.version,
        "variant": variant,
        "experiment_id": experiment_id,
        "exposure_id": exposure_id,
        "request_id": request_id,
    }


def _still_serving(experiments: Experiments, experiment: Experiment, at: str) -> bool:
    """The experiment's recorded times, read now; when they cannot be read the snapshot
    stands (and the exposure write that follows will most likely fail and say so)."""
    try:
        return experiments.serving(experiment, at)
    except ServiceError as exc:
        log.warning(
            "experiment not checked; the snapshot's routing stands",
            extra={"experiment_id": experiment.experiment_id, "error": exc.message},
        )
        return True


def _cache_label(levels: Mapping[str, int]) -> str:
    """Where a request's rows came from: one level when all agree, else ``mixed``."""
    used = [level for level, count in levels.items() if count]
    return used[0] if len(used) == 1 else "mixed"


def preload(snapshots: SnapshotCache, pool: ModelPool, model_ids: list[str]) -> list[str]:
    """Load every production version (and its components) now, so a new server process
    answers its first request at full speed; returns the models it could not load."""
    failed = []
    for model_id in model_ids:
        try:
            record = snapshots.get(model_id).production
            if record is not None:
                for component in pool.get(record).runtime.components().values():
                    resolve_component(component, snapshots, pool)
        except ServiceError as exc:
            log.warning("model not preloaded: %s", exc.message, extra={"model_id": model_id})
            failed.append(model_id)
    return failed
