"""A/B experiments: design, sticky assignment, delayed outcomes, results from aggregates.

An experiment splits one model's traffic between registered versions (one variant is
``control``); common/experiments/design.py holds the design and the assignment function.
Predictions served by an experiment leave an assignment under a server-generated exposure
id and count their user once per arm; outcomes that arrive days later are joined by that
id, written once and folded into sharded aggregates (common/experiments/outcomes.py).
Results merge the shards (common/experiments/results.py), never reading outcomes.

An experiment is ``scheduled`` until its ``start``, serves from then until ``end`` or until
it is stopped (``stopped_at``), then keeps taking outcomes for ``outcome_window_days``
(status ``collecting``); after that it is ``completed`` and its conclusion, drawn from
every outcome, is recorded once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

from common.backends.base import DocumentStore, Filter, Transaction, valid_name
from common.core.config import Settings
from common.core.errors import ConflictError, InvalidValuesError, NotFoundError
from common.experiments import schedule
from common.experiments.design import (
    BUCKETS,
    DEFAULT_DAYS,
    DEFAULT_WINDOW_DAYS,
    SPLIT_TOLERANCE,
    Experiment,
    ExperimentDesign,
    iso,
    parse,
)
from common.experiments.outcomes import (
    AGGREGATES,
    ASSIGNMENTS,
    EXPERIMENTS,
    EXPOSURES,
    OUTCOMES,
    SHARDS,
    USERS,
    empty,
    expose,
    plain,
    record_outcome,
)
from common.experiments.results import by_version, conclusion, results
from common.experiments.sketch import ArmAggregate, UserSums
from common.registry.records import VERSIONS, ModelVersion, Registry, utcnow, version_doc_id

RETENTION_DAYS: int = Settings.model_fields["retention_days"].default
SERVABLE = frozenset({"production", "staging"})

ServingCheck = Callable[[ModelVersion], list[dict[str, Any]]]
"""The failed criteria (``criterion``, and ``message`` or ``op``/``threshold``/``value``)
that keep a staging version from serving; none when it may."""


def _failure(failed: Mapping[str, Any]) -> str:
    if "message" in failed:
        return str(failed["message"])
    return (
        f"{failed['criterion']} is {failed.get('value')}; the gate needs "
        f"{failed.get('op')} {failed.get('threshold')}"
    )


__all__ = [
    "AGGREGATES",
    "ASSIGNMENTS",
    "BUCKETS",
    "DEFAULT_WINDOW_DAYS",
    "EXPERIMENTS",
    "EXPOSURES",
    "OUTCOMES",
    "SHARDS",
    "SPLIT_TOLERANCE",
    "USERS",
    "Experiment",
    "ExperimentDesign",
    "Experiments",
]


class Experiments:
    def __init__(
        self,
        documents: DocumentStore,
        registry: Registry,
        clock: Callable[[], str] = utcnow,
        *,
        retention_days: int = RETENTION_DAYS,
    ) -> None:
        """``retention_days`` (``IPO_RETENTION_DAYS``) sets an assignment's ``expire_at``."""
        self._documents = documents
        self._registry = registry
        self._clock = clock
        self._retention = timedelta(days=retention_days)

    def now(self) -> str:
        return self._clock()

    # --- design ------------------------------------------------------------------------
    def create(
        self, design: ExperimentDesign, *, actor: str, admit: ServingCheck | None = None
    ) -> Experiment:
        """``admit`` says what keeps a staging version from serving (the promotion gate and
        verification, which live above this package); without it only stages are checked.

        A model runs one experiment at a time: one whose running time overlaps another's
        that may still serve is 409, decided on the model's schedule in the transaction
        that creates it (common/experiments/schedule.py), so simultaneous creations cannot
        both pass the check. The same transaction reads each arm's version and refuses one
        no longer in a stage that may serve: a stage change reads the schedule in its own
        transaction, so of the two racing, one sees the other and is refused."""
        problems = [p for name in design.variants for p in self._arm_problems(design, name, admit)]
        if problems:
            raise _unservable(problems)
        now = self._clock()
        start = iso(parse(design.start)) if design.start else now
        end = (
            iso(parse(design.end))
            if design.end
            else iso(parse(start) + timedelta(days=DEFAULT_DAYS))
        )
        if end <= start:
            raise InvalidValuesError(
                "end must be after start", details=[{"field": "end", "rule": "after_start"}]
            )
        if end <= now:
            raise InvalidValuesError(
                f"end must be in the future: {end} has passed, so the experiment would serve "
                "nothing and conclude from no outcomes",
                details=[{"field": "end", "rule": "future", "value": end, "now": now}],
            )
        experiment = Experiment(
            experiment_id=uuid.uuid4().hex,
            model_id=design.model_id,
            variants=design.variants,
            split=design.split,
            metrics=tuple(design.metrics),
            start=start,
            end=end,
            salt=design.salt or uuid.uuid4().hex,
            status="active",
            created_by=actor,
            created_at=now,
            outcome_window_days=design.outcome_window_days,
            closes_at=iso(parse(end) + timedelta(days=design.outcome_window_days)),
        )
        known = schedule.seeds(self._documents, design.model_id)

        def write(tx: Transaction) -> None:
            others = schedule.live(tx.get, design.model_id, known, now)
            stages = {
                name: tx.get(VERSIONS, version_doc_id(design.model_id, version))
                for name, version in sorted(design.variants.items())
            }
            moved = [
                problem
                for name, doc in stages.items()
                if (problem := _stage_problem(design, name, doc.data["stage"] if doc else None))
            ]
            if moved:
                raise _unservable(moved)
            clash = schedule.overlapping(others, start, end)
            if clash is not None:
                raise ConflictError(
                    f"{design.model_id} already has experiment {clash.experiment_id}, running "
                    f"from {clash.start} to {clash.end}; a model runs one experiment at a time, "
                    "so stop it or start this one at its end",
                    details=[
                        {
                            "experiment_id": clash.experiment_id,
                            "start": clash.start,
                            "end": clash.end,
                        }
                    ],
                )
            tx.create(EXPERIMENTS, experiment.experiment_id, _dump(experiment))
            running = [e.experiment_id for e in others] + [experiment.experiment_id]
            schedule.keep(tx, design.model_id, running)

        self._documents.transaction(write)
        return experiment.as_of(now)

    def _arm_problems(
        self, design: ExperimentDesign, name: str, admit: ServingCheck | None
    ) -> list[dict[str, Any]]:
        """Each criterion the variant's version fails, in the 422's detail shape."""
        version = design.variants[name]
        arm = {"field": f"variants.{name}", "variant": name, "version": version}
        try:
            record = self._registry.get_version(design.model_id, version)
        except NotFoundError:
            message = f"{design.model_id} has no version {version!r}"
            return [{**arm, "rule": "registered_version", "message": message}]
        moved = _stage_problem(design, name, record.stage)
        if moved is not None:
            return [moved]
        if record.stage == "production" or admit is None:
            return []
        return [
            {**failed, **arm, "rule": failed["criterion"], "message": _failure(failed)}
            for failed in admit(record)
        ]

    def get(self, experiment_id: str) -> Experiment:
        """The experiment as of now: ``collecting`` between its end and the close of its
        outcome window, completed (its conclusion drawn) at the first touch after that."""
        known = plain(experiment_id) and valid_name(experiment_id)
        doc = self._documents.get(EXPERIMENTS, experiment_id) if known else None
        if doc is None:
            raise NotFoundError(f"experiment {experiment_id!r} does not exist")
        experiment = Experiment.model_validate(doc.data)
        now = self._clock()
        if experiment.status == "completed" and doc.data.get("concluding"):
            return self._conclude(experiment)
        if experiment.status == "active" and now >= experiment.closing_time():
            return self.finish(experiment, "completed")
        return experiment.as_of(now)

    def serving(self, experiment: Experiment, at: str) -> bool:
        """Whether a prediction at ``at`` belongs to ``experiment`` by its recorded times,
        whatever an instance's snapshot of it says."""
        doc = self._documents.get(EXPERIMENTS, experiment.experiment_id)
        if doc is None:
            return False
        current = Experiment.model_validate(doc.data)
        stopped_unrecorded = current.status == "stopped" and current.stopped_at is None
        return current.served_at(at) and not stopped_unrecorded

    def active_for(self, model_id: str) -> Experiment | None:
        docs = self._documents.query(
            EXPERIMENTS, [Filter("model_id", "==", model_id), Filter("status", "==", "active")]
        )
        now = self._clock()
        running = [Experiment.model_validate(d.data) for d in docs]
        return next((e for e in running if e.is_running(now)), None)

    def finish(self, experiment: Experiment, status: Literal["stopped", "completed"]) -> Experiment:
        """Stop (serving ends now; outcomes are still taken for the window, but a stopped
        experiment draws no conclusion) or complete.

        Stopping withdraws an experiment that is active or collecting: a stop after the end
        changes nothing about attribution or the window (outcomes of exposures served
        before the end are taken until ``closes_at``), only that no conclusion will be
        drawn. Stopping a stopped experiment answers it as it is; stopping a completed one
        is 409, its conclusion stands.

        Completing closes the experiment to outcomes first, in a transaction that every
        outcome's transaction reads, and only then draws each variant's conclusion (keyed
        by its version, what a promotion gate asks for) from every outcome there is.
        """
        experiment_id = experiment.experiment_id
        if status == "stopped":
            return self._stop(experiment)

        def close(tx: Transaction) -> bool:
            found = tx.get(EXPERIMENTS, experiment_id)
            if found is None or found.data.get("status") == "completed":
                return False
            tx.update(EXPERIMENTS, experiment_id, {"status": "completed", "concluding": True})
            return True

        self._documents.transaction(close)
        return self._conclude(experiment.model_copy(update={"status": "completed"}))

    def _stop(self, experiment: Experiment) -> Experiment:
        experiment_id = experiment.experiment_id
        now = self._clock()
        window = timedelta(days=experiment.outcome_window_days)
        changes: dict[str, Any] = {
            "status": "stopped",
            "stopped_at": now,
            "closes_at": iso(parse(min(now, experiment.end)) + window),
        }

        def stop(tx: Transaction) -> Experiment:
            found = tx.get(EXPERIMENTS, experiment_id)
            if found is None:
                raise NotFoundError(f"experiment {experiment_id!r} does not exist")
            stored = Experiment.model_validate(found.data)
            if stored.status == "completed":
                raise ConflictError(
                    f"experiment {experiment_id} is completed: its outcome window closed at "
                    f"{stored.closing_time()} and its conclusion stands; it cannot be stopped",
                    details=[
                        {
                            "status": "completed",
                            "closes_at": stored.closing_time(),
                            "conclusions": stored.conclusions,
                        }
                    ],
                )
            if stored.status == "stopped":
                return stored
            tx.update(EXPERIMENTS, experiment_id, changes)
            return stored.model_copy(update=changes)

        return self._documents.transaction(stop)

    def _conclude(self, experiment: Experiment) -> Experiment:
        conclusions = by_version(experiment.variants, conclusion(self.results(experiment)))
        changes = {"conclusions": conclusions, "concluding": False}
        self._documents.update(EXPERIMENTS, experiment.experiment_id, changes)
        return experiment.model_copy(update={"conclusions": conclusions})

    # --- exposure and outcomes ---------------------------------------------------------
    def expose(
        self,
        experiment: Experiment,
        exposure_id: str,
        variant: str,
        subject: str,
        at: str | None = None,
    ) -> None:
        """Record that ``exposure_id`` (generated by the server) served ``subject`` from
        ``variant`` at ``at`` (default now); see common/experiments/outcomes.py."""
        moment = at or self._clock()
        expose(self._documents, experiment, exposure_id, variant, subject, moment, self._retention)

    def record_outcome(
        self, experiment: Experiment, exposure_id: str, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write an outcome once: the same body again is the same answer and no write."""
        return record_outcome(self._documents, experiment, exposure_id, values, self._clock())

    # --- results -----------------------------------------------------------------------
    def results(self, experiment: Experiment) -> dict[str, Any]:
        arms: dict[str, dict[str, ArmAggregate]] = {
            v: {m.name: empty(m) for m in experiment.metrics} for v in experiment.variants
        }
        users: dict[str, dict[str, UserSums]] = {
            v: {m.name: UserSums() for m in experiment.metrics} for v in experiment.variants
        }
        known_metrics = {m.name for m in experiment.metrics}
        for doc in self._documents.query(
            AGGREGATES, [Filter("experiment_id", "==", experiment.experiment_id)]
        ):
            variant, metric = doc.data["variant"], doc.data["metric"]
            if variant not in arms or metric not in known_metrics:
                continue
            arms[variant][metric].merge(ArmAggregate.from_dict(doc.data["aggregate"]))
            if "users" in doc.data:
                users[variant][metric].merge(UserSums.from_dict(doc.data["users"]))
        requests = dict.fromkeys(experiment.variants, 0)
        distinct = dict.fromkeys(experiment.variants, 0)
        per_user = True
        for doc in self._documents.query(
            EXPOSURES, [Filter("experiment_id", "==", experiment.experiment_id)]
        ):
            if doc.data["variant"] not in requests:
                continue
            requests[doc.data["variant"]] += int(doc.data["count"])
            if "users" in doc.data:
                distinct[doc.data["variant"]] += int(doc.data["users"])
            else:  # counted before users were: only requests can be checked
                per_user = False
        found = results(
            arms,
            experiment.metrics,
            experiment.split,
            distinct if per_user else requests,
            users=users,
            exposure_unit="user" if per_user else "request",
        )
        found["srm"]["requests"] = requests
        return found


def _unservable(problems: list[dict[str, Any]]) -> InvalidValuesError:
    return InvalidValuesError(
        "an arm may serve only a production version, or a staging version that passes "
        "the promotion gate and verification: "
        + "; ".join(f"variant {p['variant']!r}: {p['message']}" for p in problems),
        details=problems,
    )


def _stage_problem(design: ExperimentDesign, name: str, stage: str | None) -> dict[str, Any] | None:
    """The 422 detail of an arm whose version is in a stage that may not serve."""
    if stage in SERVABLE:
        return None
    version = design.variants[name]
    message = f"{design.model_id} {version} is {stage}, not production or staging"
    if stage == "development":
        message += " (move it to staging through the lifecycle first)"
    arm = {"field": f"variants.{name}", "variant": name, "version": version}
    return {**arm, "rule": "stage", "stage": stage, "message": message}


def _dump(experiment: Experiment) -> dict[str, Any]:
    return experiment.model_dump(mode="json")
