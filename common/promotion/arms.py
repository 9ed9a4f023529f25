"""What running experiments mean for promotion: a version an experiment serves is not
moved from under it, and an experiment is the evidence a gate may require.

The experiments package is imported where it is used: only promotion and stage changes
pay for it, not a prediction function's cold start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from common.backends.base import DocumentStore, Filter, Transaction
from common.core.errors import ConflictError
from common.registry.records import Registry

if TYPE_CHECKING:
    from common.experiments.schedule import Reader

EXPERIMENTS = "experiments"


def seeds(documents: DocumentStore, model_id: str) -> list[str]:
    """The model's experiments stored as active, read before a transaction (which cannot
    query): with the model's schedule, every experiment that may still serve."""
    from common.experiments import schedule

    return schedule.seeds(documents, model_id)


def refuse_if_arm(
    documents: DocumentStore,
    model_id: str,
    version: str,
    *,
    now: str,
    known: Iterable[str] | None = None,
) -> None:
    """409 while ``version`` is a variant of an experiment that serves, or will serve
    from its start, until its end: it is serving traffic as much as a canary is.
    ``known`` is ``seeds``, when the caller has read them already."""
    found = seeds(documents, model_id) if known is None else known
    _refuse(documents.get, model_id, version, found, now)


def refuse_if_arm_in(
    tx: Transaction, model_id: str, version: str, *, known: Iterable[str], now: str
) -> None:
    """``refuse_if_arm`` inside a transaction that moves the version: it reads the model's
    experiment schedule, which creating an experiment writes, so a stage change and an
    experiment naming the version cannot both succeed. ``known`` is ``seeds``."""
    _refuse(tx.get, model_id, version, known, now)


def _refuse(read: Reader, model_id: str, version: str, known: Iterable[str], now: str) -> None:
    from common.experiments import schedule

    for experiment in schedule.live(read, model_id, known, now):
        for name, variant_version in sorted(experiment.variants.items()):
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
