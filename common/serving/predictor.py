"""Prediction as one object, built once per instance with everything a request does not
carry: snapshots, loaded models, experiments, the cache, request counts, drift sampling.

A handler passes only what differs per call (model id, body, request id, subject, log
labels), so adding a collaborator changes this module and ``Services.build``, never the
callers.

resolve the serving snapshot -> route to a version -> validate the batch against the
model's schema -> take the loaded model from the pool -> the cache, then one vectorised
predict for the rows it lacks -> counts, drift sample, exposure -> the response.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from common.core.errors import ConflictError, NotFoundError, ServiceError
from common.core.validation import validate
from common.experiments.core import Experiment, Experiments
from common.models import runtime_class
from common.monitoring.sampling import DriftSampler
from common.registry.records import ModelVersion, utcnow
from common.serving.cache import PredictionCache, cache_key
from common.serving.hot_keys import HotKeys
from common.serving.pipeline import (
    PredictRequest,
    ServingSnapshot,
    SnapshotCache,
    resolve_component,
)
from common.serving.pool import ModelPool

log = logging.getLogger("ipo.serving")

Admit = Callable[[str, str], ModelVersion]
"""(model id, version) -> the record of a version outside the serving state that may
serve a request naming it, or the error saying why not (common/promotion/admission.py)."""


@dataclass(frozen=True)
class Prediction:
    """What one request was served: the answer of either protocol is made from this."""

    model_id: str
    model_version: str
    variant: str
    experiment_id: str | None
    exposure_id: str | None
    predictions: list[Any]
    cache_rows: Mapping[str, int] | None
    """Rows per cache level (``l1``, ``l2``, ``miss``); None without a cache."""
    kind: str
    """The served version's model kind (what its predictions look like)."""

    @property
    def cache_hit(self) -> bool:
        """Every row came from the cache: nothing was computed for this request."""
        return self.cache_rows is not None and self.cache_rows.get("miss", 0) == 0

    def body(self, request_id: str) -> dict[str, Any]:
        """The ``/v1/predict`` answer."""
        return {
            "predictions": self.predictions,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "variant": self.variant,
            "experiment_id": self.experiment_id,
            "exposure_id": self.exposure_id,
            "request_id": request_id,
        }


class Predictor:
    """The instance's prediction path; every collaborator but snapshots and pool is
    optional, so a script or test can leave out the cache, counts or experiments."""

    def __init__(
        self,
        snapshots: SnapshotCache,
        pool: ModelPool,
        *,
        experiments: Experiments | None = None,
        cache: PredictionCache | None = None,
        hot_keys: HotKeys | None = None,
        sampler: DriftSampler | None = None,
        max_details: int = 100,
        clock: Callable[[], str] | None = None,
        admit: Admit | None = None,
    ) -> None:
        self.snapshots = snapshots
        self.pool = pool
        self.experiments = experiments
        self.cache = cache
        self.hot_keys = hot_keys
        self.sampler = sampler
        self.max_details = max_details
        self.admit = admit
        # experiments and routing read one clock, so a test that moves one moves both
        self._clock = clock or (experiments.now if experiments is not None else utcnow)

    def predict(
        self,
        model_id: str,
        request: PredictRequest,
        *,
        request_id: str,
        subject: str = "",
        labels: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The answer to one ``/v1/predict`` request; ``labels`` receives what the request's
        log line says about it (version, variant, rows, cache levels)."""
        served = self.serve(model_id, request, subject=subject, labels=labels)
        return served.body(request_id)

    def serve(
        self,
        model_id: str,
        request: PredictRequest,
        *,
        subject: str = "",
        labels: dict[str, Any] | None = None,
        version: str | None = None,
    ) -> Prediction:
        """One request's predictions and how they were served, whatever the protocol.

        ``version`` names the version explicitly (``/v2/.../versions/{v}/infer``): it is
        served only while it may serve (``version_for``), and an experiment's arm named so
        records no exposure, since the subject was not assigned to it."""
        snapshots, experiments = self.snapshots, self.experiments
        snapshot = snapshots.get(model_id)
        at = ""  # the time is read only for a model with an experiment, never per prediction
        if snapshot.experiment is not None:
            at = self._clock()
        record, variant, experiment_id = self._route(snapshot, subject, at, version)
        routed = snapshot.experiment if experiment_id is not None else None
        if (
            routed is not None
            and experiments is not None
            and not _still_serving(experiments, routed, at)
        ):
            # stopped (or replaced) since this instance's snapshot: the recorded times win
            snapshots.invalidate(model_id)
            snapshot = snapshots.get(model_id)
            record, variant, experiment_id = self._route(snapshot, subject, at, version)
        if record is None:
            raise NotFoundError(f"model {model_id!r} has no production version; promote one first")

        predictions, levels, keys = self.run_version(record, request)
        if self.hot_keys is not None and keys is not None:
            self.hot_keys.record(model_id, keys, request.instances, request.parameters)
        if self.sampler is not None:
            try:  # monitoring never fails a prediction
                self.sampler.observe(
                    model_id, record.version, record.drift_baseline, request.instances, predictions
                )
            except Exception:
                log.warning(
                    "drift sample not recorded", exc_info=True, extra={"model_id": model_id}
                )

        exposure_id = None
        assigned = version is None and experiment_id is not None
        if assigned and experiments is not None and snapshot.experiment:
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
        return Prediction(
            model_id=model_id,
            model_version=record.version,
            variant=variant,
            experiment_id=experiment_id,
            exposure_id=exposure_id,
            predictions=predictions,
            cache_rows=levels,
            kind=record.kind,
        )

    def _route(
        self, snapshot: ServingSnapshot, subject: str, at: str, version: str | None
    ) -> tuple[ModelVersion | None, str, str | None]:
        if version is None:
            return snapshot.route(subject, at)
        return self.version_for(snapshot, version, at)

    def version_for(
        self, snapshot: ServingSnapshot, version: str, at: str = ""
    ) -> tuple[ModelVersion, str, str | None]:
        """A version named explicitly, with the part it plays: production, canary, an arm
        of the running experiment (with its id), or a staging version that ``admit``
        accepts. Any other is 409: naming a version never serves one that may not serve."""
        for record, variant in ((snapshot.production, "production"), (snapshot.canary, "canary")):
            if record is not None and record.version == version:
                return record, variant, None
        experiment = snapshot.experiment
        if experiment is not None and experiment.is_running(at or self._clock()):
            for arm, record in sorted(snapshot.experiment_versions.items()):
                if record.version == version:
                    return record, arm, experiment.experiment_id
        if self.admit is None:
            raise ConflictError(
                f"{snapshot.model_id} {version} does not serve: it is not the production or "
                "canary version, nor an arm of a running experiment"
            )
        return self.admit(snapshot.model_id, version), "staging", None

    def load(self, record: ModelVersion) -> None:
        """Load a version and the components it combines, as a prediction would: what a
        readiness check asks for. Raises the error a prediction would meet."""
        loaded = self.pool.get(record)
        for component_id in loaded.runtime.components().values():
            resolve_component(component_id, self.snapshots, self.pool)

    def run_version(
        self, record: ModelVersion, request: PredictRequest
    ) -> tuple[list[Any], dict[str, int] | None, list[str] | None]:
        """One version's predictions for a request, through the cache when there is one:
        (predictions, rows per cache level, cache keys). Cache warming calls it directly."""
        runtime = runtime_class(record.kind)  # a kind unknown to this code is a deployment fault
        instances = validate(
            runtime.instances_adapter(),
            request.instances,
            prefix=("instances",),
            max_details=self.max_details,
        )
        parameters = validate(
            runtime.parameters_adapter(),
            request.parameters,
            prefix=("parameters",),
            max_details=self.max_details,
        )
        loaded = self.pool.get(record)
        components = {
            role: resolve_component(component_id, self.snapshots, self.pool)
            for role, component_id in loaded.runtime.components().items()
        }

        def compute(rows: list[int]) -> list[Any]:
            batch = instances if len(rows) == len(instances) else [instances[i] for i in rows]
            if components:
                return list(loaded.runtime.predict_composite(batch, parameters, components))
            return list(loaded.runtime.predict(batch, parameters))

        if self.cache is None:
            return compute(list(range(len(instances)))), None, None
        # A composite's output depends on its components' versions as well as its own.
        version = "+".join(
            [record.version, *(f"{c.model_id}@{c.version}" for c in components.values())]
        )
        keys = [
            cache_key(record.model_id, version, row, request.parameters)
            for row in request.instances
        ]
        predictions, levels = self.cache.compute_missing(keys, compute)
        return predictions, levels, keys


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
