"""An explain request: the predictions of the version that serves the caller, through the
same routing, cache and records as a prediction, with each instance's attributions
(common/explain, docs/EXPLANATIONS.md).

``parameters.explanation`` holds the explanation's own options; the rest of
``parameters`` are the model's, so the predictions answered are the ones
``/v1/predict`` would answer for the same body without them.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.core.errors import InvalidValuesError
from common.core.validation import validate
from common.explain.engine import Explanation, ExplanationParameters, explain
from common.registry.records import ModelVersion
from common.serving.pipeline import PredictRequest, resolve_component
from common.serving.predictor import Predictor

EXPLANATION_PARAMETERS = TypeAdapter(ExplanationParameters)


def explain_request(
    predictor: Predictor,
    model_id: str,
    request: PredictRequest,
    *,
    budget: int,
    request_id: str,
    subject: str = "",
    labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``/v1/explain`` answer: the ``/v1/predict`` answer plus ``explanations`` (per
    instance, its attributions) and ``explanation_metadata``. A request costing more than
    ``budget`` instances x paths is refused before anything is computed."""
    own = dict(request.parameters)
    options = validate(
        EXPLANATION_PARAMETERS,
        own.pop("explanation", {}),
        prefix=("parameters", "explanation"),
        max_details=predictor.max_details,
    )
    check_budget(len(request.instances), options, budget)
    served = predictor.serve(
        model_id, PredictRequest(instances=request.instances, parameters=own), subject=subject
    )
    snapshot = predictor.snapshots.get(model_id)
    record, _, _ = predictor.version_for(snapshot, served.model_version)
    explained = explain_version(predictor, record, request.instances, options)
    if labels is not None:
        labels.update(
            model_id=model_id,
            model_version=served.model_version,
            variant=served.variant,
            instances=len(served.predictions),
            explanation_paths=options.paths,
        )
    return {**served.body(request_id), **explained}


def check_budget(instances: int, options: ExplanationParameters, budget: int) -> None:
    """Refuse, before anything is computed, an explanation costing more than ``budget``
    instances x paths."""
    cost = instances * options.paths
    if cost > budget:
        raise InvalidValuesError(
            f"{instances} instances x {options.paths} paths = {cost} exceeds the "
            f"explanation budget of {budget} per request (IPO_EXPLAIN_BUDGET); send fewer "
            "instances or paths",
            details=[{"field": "parameters.explanation.paths", "rule": "explain_budget"}],
        )


def explain_version(
    predictor: Predictor,
    record: ModelVersion,
    instances: list[dict[str, Any]],
    options: ExplanationParameters,
) -> dict[str, Any]:
    """``explanations`` and ``explanation_metadata`` of ``instances`` under one version,
    its components at their production versions: what an explain answer adds to the
    predictions, and what a kept prediction is explained with again."""
    loaded = predictor.pool.get(record)
    components = {
        role: resolve_component(component_id, predictor.snapshots, predictor.pool)
        for role, component_id in loaded.runtime.components().items()
    }
    baseline = options.baseline if options.baseline is not None else record.explanation_baseline
    found = explain(
        loaded.runtime,
        instances,
        baseline,
        paths=options.paths,
        seed=options.seed,
        components=components,
        max_details=predictor.max_details,
    )
    source = "request" if options.baseline is not None else "version"
    return {
        "explanations": _explanations(found),
        "explanation_metadata": {
            "method": found.method,
            "output_scale": found.scale,
            "paths": options.paths if found.method == "sampled_shapley" else None,
            "seed": options.seed if found.method == "sampled_shapley" else None,
            "baseline": "absence" if found.baseline == "absence" else source,
            "baseline_instance": None if found.baseline == "absence" else baseline,
        },
    }


def _explanations(found: Explanation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, row in enumerate(found.attributions):
        explanation: dict[str, Any] = {"attributions": [a.as_dict() for a in row]}
        if found.feature_values is not None:
            explanation["feature_values"] = found.feature_values[i]
        out.append(explanation)
    return out
