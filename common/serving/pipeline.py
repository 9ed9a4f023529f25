"""What a prediction is routed by: the request envelope, each model's serving snapshot,
the version a subject is served, and the components a composite model combines.
``common/serving/predictor.py`` runs a prediction over them.

The registry is not read on every request: each model's serving snapshot (production
version and its record) is kept in memory for ``snapshot_ttl_s`` and reloaded after that;
a reload that finds the same generation keeps the record it has.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import Field, TypeAdapter, model_validator

from common.core.errors import (
    InvalidValuesError,
    NotFoundError,
    ServiceError,
    UnavailableError,
)
from common.core.validation import StrictModel
from common.experiments.core import Experiment, Experiments
from common.models.base import Component
from common.registry.records import ModelVersion, Registry, utcnow
from common.serving.pool import ModelPool

log = logging.getLogger("ipo.serving")

MAX_INSTANCES = 1000


class PredictRequest(StrictModel):
    """The Vertex AI request shape; each instance is checked by the model's own schema."""

    instances: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_INSTANCES)
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _one_instance_unwrapped(cls, data: Any) -> Any:
        """An instance posted as the whole body gets one 422 saying how to wrap it, not an
        "extra field" error for each of its fields."""
        if isinstance(data, dict) and data and not {"instances", "parameters"} & data.keys():
            raise InvalidValuesError(
                'the body must be {"instances": [...]}: wrap the instance in a list under '
                '"instances"',
                details=[
                    {
                        "field": "instances",
                        "path": ["instances"],
                        "rule": "wrap_in_instances",
                        "message": 'send {"instances": [<this object>]}',
                    }
                ],
            )
        return data


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

    LOCKS = 64
    """Reload locks, a model taking the one its id hashes to: a fixed number, so a stream
    of requests naming models that do not exist leaves nothing behind (a lock per name
    would grow with every name asked for). Two models sharing a lock only reload in turn."""

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
        self._locks = tuple(threading.Lock() for _ in range(self.LOCKS))

    def _lock_for(self, model_id: str) -> threading.Lock:
        return self._locks[bucket(model_id) % self.LOCKS]

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
