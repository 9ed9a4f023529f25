"""What running experiments mean for promotion: a version an experiment serves is not
moved from under it, and an experiment is the evidence a gate may require.

The experiments package is imported where it is used: only promotion and stage changes
pay for it, not a prediction function's cold start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.backends.base import DocumentStore, Filter
from common.core.errors import ConflictError
from common.registry.records import Registry

EXPERIMENTS = "experiments"


def refuse_if_arm(documents: DocumentStore, model_id: str, version: str, *, now: str) -> None:
    """409 while ``version`` is a variant of an experiment that serves, or will serve
    from its start, until its end: it is serving traffic as much as a canary is."""
    from common.experiments.core import Experiment

    for doc in documents.query(
        EXPERIMENTS, [Filter("model_id", "==", model_id), Filter("status", "==", "active")]
    ):
        experiment = Experiment.model_validate(doc.data)
        if now >= experiment.end:
            continue
        for name, variant_version in experiment.variants.items():
            if variant_version == version:
                raise ConflictError(
                    f"{model_id} {version} is variant {name!r} of experiment "
                    f"{experiment.experiment_id}, which serves it until {experiment.end}; "
                    "stop the experiment before moving it",
                    details=[{"experiment_id": experiment.experiment_id, "variant": name}],
                )


def evidence(
    documents: DocumentStore,
    registry: Registry,
    model_id: str,
    version: str,
    clock: Callable[[], str],
) -> dict[str, Any]:
    """A completed experiment of this model in which ``version`` showed no regression.

    An experiment whose outcome window has closed but that nobody has read since is
    completed here first, so its conclusion is drawn from every outcome it took."""
    from common.experiments.core import Experiment, Experiments

    now = clock()
    for doc in documents.query(
        EXPERIMENTS, [Filter("model_id", "==", model_id), Filter("status", "==", "active")]
    ):
        if now >= Experiment.model_validate(doc.data).closing_time():
            Experiments(documents, registry, clock).get(doc.id)
    found = documents.query(
        EXPERIMENTS,
        [Filter("model_id", "==", model_id), Filter("status", "==", "completed")],
    )
    for doc in found:
        if doc.data.get("conclusions", {}).get(version) == "no_regression":
            return {"criterion": "experiment", "passed": True, "experiment_id": doc.id}
    return {
        "criterion": "experiment",
        "passed": False,
        "message": f"no completed experiment shows {version} without a significant "
        "regression on its success metrics",
    }
