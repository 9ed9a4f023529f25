"""Which experiments of a model may still serve, decided inside store transactions.

A store transaction reads documents by id and cannot query, so two rules that depend on
"every experiment of this model" are decided on one small document per model, its
schedule (``experiment_schedules/{model_id}``): the ids of the experiments that may still
serve. Creating an experiment reads it and writes it in the transaction that creates the
experiment, so of two overlapping creations one sees the other (409); moving a version's
stage reads it in the transaction that moves the stage, so a stage change and an
experiment naming that version are serialised by the store and one of them is refused.

Each listed experiment's own record is read in the same transaction, so a stop (written
to that record) is seen as well. Experiments stored before schedules existed are found
by a query made before the transaction (``seeds``) and are listed by the next creation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from common.backends.base import Document, DocumentStore, Filter, Transaction
from common.experiments.design import Experiment
from common.experiments.outcomes import EXPERIMENTS

SCHEDULES = "experiment_schedules"

Reader = Callable[[str, str], Document | None]
"""``get(collection, id)`` of a transaction (or, for a check that writes nothing, a store)."""


def seeds(documents: DocumentStore, model_id: str) -> list[str]:
    """The model's experiments stored as active, read before a transaction: those created
    before the schedule document existed are not listed in it."""
    found = documents.query(
        EXPERIMENTS, [Filter("model_id", "==", model_id), Filter("status", "==", "active")]
    )
    return [d.id for d in found]


def live(read: Reader, model_id: str, known: Iterable[str], now: str) -> list[Experiment]:
    """The model's experiments that serve now or will from their start: not stopped, not
    completed, not past their end. Reads the schedule and each experiment it lists."""
    schedule = read(SCHEDULES, model_id)
    listed = schedule.data.get("experiments", []) if schedule is not None else []
    found: list[Experiment] = []
    for experiment_id in sorted({*listed, *known}):
        doc = read(EXPERIMENTS, experiment_id)
        if doc is None:
            continue
        experiment = Experiment.model_validate(doc.data)
        if (
            experiment.model_id == model_id
            and experiment.status == "active"
            and now < experiment.end
        ):
            found.append(experiment)
    return found


def overlapping(experiments: Iterable[Experiment], start: str, end: str) -> Experiment | None:
    """The first experiment whose running time meets ``[start, end)``."""
    return next((e for e in experiments if e.start < end and start < e.end), None)


def keep(tx: Transaction, model_id: str, experiment_ids: Iterable[str]) -> None:
    """Write the model's schedule: the experiments that may still serve."""
    ids = sorted(set(experiment_ids))
    tx.set(SCHEDULES, model_id, {"model_id": model_id, "experiments": ids})
