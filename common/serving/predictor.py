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
from typing import Any

from common.core.errors import NotFoundError, ServiceError
from common.core.validation import validate
from common.experiments.core import Experiment, Experiments
from common.models import runtime_class
from common.monitoring.sampling import DriftSampler
from common.registry.records import ModelVersion, utcnow
from common.serving.cache import PredictionCache, cache_key
from common.serving.hot_keys import HotKeys
from common.serving.pipeline import PredictRequest, SnapshotCache, resolve_component
from common.serving.pool import ModelPool

log = logging.getLogger("ipo.serving")


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
    ) -> None:
        self.snapshots = snapshots
        self.pool = pool
        self.experiments = experiments
        self.cache = cache
        self.hot_keys = hot_keys
        self.sampler = sampler
        self.max_details = max_details
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
        """The answer to one prediction request; ``labels`` receives what the request's
        log line says about it (version, variant, rows, cache levels)."""
        snapshots, experiments = self.snapshots, self.experiments
        snapshot = snapshots.get(model_id)
        at = ""  # the time is read only for a model with an experiment, never per prediction
        if snapshot.experiment is not None:
            at = self._clock()
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
