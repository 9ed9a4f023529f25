"""What an experiment writes while it runs: exposures, assignments, outcomes, aggregates.

Users are the unit. The first exposure of a user in an arm creates that user's document
(create-if-absent) and counts one distinct user in a sharded counter, which the
sample-ratio check reads; every prediction leaves an assignment under a server-generated
exposure id. An outcome is written once (idempotent) in a transaction that reads the
user's document and one random shard of the arm's aggregate per metric, and adds to the
shard both the outcome (per-request moments and quantile sketch) and the *deltas* of the
user-level sums (common/experiments/sketch.py ``UserSums``), so shards stay mergeable by
addition and results never read outcomes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from common.backends.base import EXPIRE_AT, DocumentStore, Transaction, valid_name
from common.core.errors import ConflictError, InvalidValuesError, NotFoundError
from common.experiments.design import Experiment, iso, parse
from common.experiments.sketch import ArmAggregate, UserSums
from common.experiments.stats import Metric

EXPERIMENTS = "experiments"
EXPOSURES = "experiment_exposures"
ASSIGNMENTS = "experiment_assignments"
OUTCOMES = "experiment_outcomes"
AGGREGATES = "experiment_aggregates"
USERS = "experiment_users"
SHARDS = 512
"""Shards per (variant, metric) aggregate and per variant exposure counter. At 500 outcomes
a second split over two variants each shard takes about 0.5 writes a second, under
Firestore's sustained one write a second per document; results read every shard."""

MAX_CONTINUOUS = 1e12  # the 422's message says 1e12
"""Largest magnitude of a continuous outcome. Aggregates keep sums of squares of each
user's running total; past about 1e154 those overflow to infinity, which no store holds
and no statistic survives. 1e12 leaves room for a trillion outcomes of a user and more."""

_shard_random = random.SystemRandom()


def expose(
    documents: DocumentStore,
    experiment: Experiment,
    exposure_id: str,
    variant: str,
    subject: str,
    at: str,
    retention: timedelta,
) -> None:
    """Remember which variant served a prediction, under the server's exposure id, and
    count its user once per arm. The assignment holds the user's id, so it expires
    (Firestore TTL) when retention ends; the user document holds only a salted key."""
    user = experiment.user_key(subject)
    assignment = {
        "experiment_id": experiment.experiment_id,
        "exposure_id": exposure_id,
        "variant": variant,
        "version": experiment.variants[variant],
        "subject": subject,
        "user": user,
        "at": at,
        EXPIRE_AT: iso(parse(at) + retention),
    }
    user_id = f"{experiment.experiment_id}:{variant}:{user}"
    shard = _shard_random.randrange(SHARDS)
    counter_id = f"{experiment.experiment_id}:{variant}:{shard}"

    def count(tx: Transaction) -> None:
        known = tx.get(USERS, user_id)
        found = tx.get(EXPOSURES, counter_id)
        counts = {"count": 0, "users": 0} if found is None else found.data
        # the assignment in the same commit: one round trip, never one without the other
        tx.create(ASSIGNMENTS, f"{experiment.experiment_id}:{exposure_id}", assignment)
        if known is None:
            tx.create(
                USERS,
                user_id,
                {
                    "experiment_id": experiment.experiment_id,
                    "variant": variant,
                    "first_at": at,
                    "totals": {},
                },
            )
        tx.set(
            EXPOSURES,
            counter_id,
            {
                "experiment_id": experiment.experiment_id,
                "variant": variant,
                "shard": shard,
                "count": int(counts["count"]) + 1,
                "users": int(counts.get("users", 0)) + (known is None),
            },
        )

    documents.transaction(count)


def _problem(metric: str, rule: str, message: str) -> dict[str, Any]:
    return {
        "field": f"values.{metric}",
        "path": ["values", metric],
        "rule": rule,
        "message": message,
    }


def normalise(metrics: Mapping[str, Metric], values: Mapping[str, Any]) -> dict[str, Any]:
    """Check outcome values against the metrics' types and normalise them: a binary
    outcome becomes true/false (``1`` and ``true`` are one outcome), a number a float."""
    problems: list[dict[str, Any]] = []
    for name, value in values.items():
        metric = metrics.get(name)
        if metric is None:
            known = ", ".join(sorted(metrics))
            message = f"not a metric of this experiment (its metrics: {known})"
            problems.append(_problem(name, "unknown_metric", message))
        elif metric.type == "binary" and not (
            isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1))
        ):
            problems.append(_problem(name, "boolean", "a binary metric takes true, false, 1 or 0"))
            problems[-1]["value"] = value
        elif metric.type == "continuous" and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            problems.append(_problem(name, "number", "a continuous metric takes a number"))
            problems[-1]["value"] = value
        elif metric.type == "continuous" and not abs(value) <= MAX_CONTINUOUS:
            message = "a continuous outcome lies from -1e12 to 1e12 (MAX_CONTINUOUS)"
            problems.append(_problem(name, "range", message))
            problems[-1]["value"] = value
    if problems or not values:
        raise InvalidValuesError(
            "outcome values must name the experiment's metrics with values of their type",
            details=problems
            or [
                {
                    "field": "values",
                    "path": ["values"],
                    "rule": "not_empty",
                    "message": "name at least one metric",
                }
            ],
        )
    return {
        name: bool(value) if metrics[name].type == "binary" else float(value)
        for name, value in values.items()
    }


def fingerprint(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(values), sort_keys=True).encode()).hexdigest()


def empty(metric: Metric) -> ArmAggregate:
    return ArmAggregate.continuous() if metric.type == "continuous" else ArmAggregate.binary()


def plain(identifier: str) -> bool:
    return 0 < len(identifier) <= 128 and all(c.isalnum() or c in "._:-" for c in identifier)


def closed(experiment: Experiment) -> ConflictError:
    return ConflictError(
        f"experiment {experiment.experiment_id} took outcomes until "
        f"{experiment.closing_time()} ({experiment.outcome_window_days} days after it "
        "stopped serving, its outcome window); its conclusion is drawn",
        details=[
            {
                "outcome_window_days": experiment.outcome_window_days,
                "closes_at": experiment.closing_time(),
            }
        ],
    )


def record_outcome(
    documents: DocumentStore,
    experiment: Experiment,
    exposure_id: str,
    values: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """Write an outcome once: the same body again is the same answer and no write."""
    metrics = {m.name: m for m in experiment.metrics}
    raw_sha = fingerprint(values)
    normal = normalise(metrics, values)
    body_sha = fingerprint(normal)
    outcome_id = f"{experiment.experiment_id}:{exposure_id}"
    known = plain(exposure_id) and valid_name(outcome_id)
    assignment = documents.get(ASSIGNMENTS, outcome_id) if known else None
    if assignment is None:
        raise NotFoundError(
            f"exposure {exposure_id!r} was never served in experiment {experiment.experiment_id}"
        )
    if not experiment.served_at(str(assignment.data["at"])):
        raise ConflictError(
            f"exposure {exposure_id!r} was served at {assignment.data['at']}, outside the "
            f"running time of experiment {experiment.experiment_id}"
        )
    variant = str(assignment.data["variant"])
    user = assignment.data.get("user") or experiment.user_key(str(assignment.data["subject"]))
    user_id = f"{experiment.experiment_id}:{variant}:{user}"
    shard = _shard_random.randrange(SHARDS)
    answer = {
        "experiment_id": experiment.experiment_id,
        "exposure_id": exposure_id,
        "variant": variant,
        "values": normal,
    }

    def shard_id(name: str) -> str:
        return f"{experiment.experiment_id}:{variant}:{name}:{shard}"

    def write(tx: Transaction) -> bool:
        existing = tx.get(OUTCOMES, outcome_id)
        if existing is not None:
            # outcomes written before values were normalised kept the raw fingerprint
            if existing.data["body_sha256"] not in (body_sha, raw_sha):
                raise ConflictError(f"exposure {exposure_id!r} already has a different outcome")
            return False
        stored = tx.get(EXPERIMENTS, experiment.experiment_id)
        if (
            stored is None
            or stored.data.get("status") == "completed"
            or now >= (experiment.closing_time())
        ):
            raise closed(experiment)
        person = tx.get(USERS, user_id)
        shards = {name: tx.get(AGGREGATES, shard_id(name)) for name in normal}
        totals: dict[str, Any] = dict(person.data.get("totals") or {}) if person else {}
        tx.create(OUTCOMES, outcome_id, {**answer, "body_sha256": body_sha, "at": now})
        for name, value in normal.items():
            found = shards[name]
            arm = ArmAggregate.from_dict(found.data["aggregate"]) if found else empty(metrics[name])
            sums = (
                UserSums.from_dict(found.data["users"])
                if found and "users" in found.data
                else (UserSums())
            )
            before = totals.get(name) or {"y": 0.0, "n": 0}
            arm.add(float(value))
            sums.add(float(before["y"]), int(before["n"]), float(value))
            totals[name] = {"y": float(before["y"]) + float(value), "n": int(before["n"]) + 1}
            tx.set(
                AGGREGATES,
                shard_id(name),
                {
                    "experiment_id": experiment.experiment_id,
                    "variant": variant,
                    "metric": name,
                    "shard": shard,
                    "aggregate": arm.to_dict(),
                    "users": sums.to_dict(),
                },
            )
        tx.set(
            USERS,
            user_id,
            {
                "experiment_id": experiment.experiment_id,
                "variant": variant,
                "first_at": person.data.get("first_at", now) if person else now,
                "totals": totals,
            },
        )
        return True

    written = documents.transaction(write)
    return {**answer, "written": written}
