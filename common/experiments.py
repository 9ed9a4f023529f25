"""A/B experiments: design, sticky assignment, delayed outcomes, results from aggregates.

An experiment splits one model's traffic between registered versions (one variant is
``control``). A user's variant is a hash of experiment id, salt and user id into 10,000
buckets walked along the cumulative split: deterministic and sticky while the weights stay
the same. When weights change, a user keeps their variant only if their bucket still
falls in that variant's range; the buckets that move are the ones the changed weights
cover, and nobody else moves.

Predictions served by an experiment leave an assignment (request id -> variant) and count
one exposure; an outcome that arrives days later is joined by request id, written once
(idempotent), and folded into the variant's aggregate for each metric. Exposures and
aggregates are spread over shards, so no single document takes the write load, and
results are computed by merging the shards (common/stats_results.py), never by reading
outcomes.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.backends.base import EXPIRE_AT, DocumentStore, Filter, Transaction, rfc3339, valid_name
from common.config import Settings
from common.errors import ConflictError, InvalidValuesError, NotFoundError
from common.registry import Registry, utcnow
from common.stats import Metric
from common.stats_results import conclusion, results
from common.stats_sketch import ArmAggregate

EXPERIMENTS = "experiments"
EXPOSURES = "experiment_exposures"
ASSIGNMENTS = "experiment_assignments"
OUTCOMES = "experiment_outcomes"
AGGREGATES = "experiment_aggregates"
SHARDS = 512
"""Shards per (variant, metric) aggregate and per variant exposure counter. At 500 outcomes
a second split over two variants each shard takes about 0.5 writes a second, under
Firestore's sustained one write a second per document; results read every shard."""
BUCKETS = 10_000
SPLIT_TOLERANCE = 0.001
DEFAULT_DAYS = 30
RETENTION_DAYS: int = Settings.model_fields["retention_days"].default

_shard_random = random.SystemRandom()


class Experiment(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    experiment_id: str
    model_id: str
    variants: dict[str, str]
    split: dict[str, float]
    metrics: tuple[Metric, ...]
    start: str
    end: str
    salt: str
    status: Literal["active", "stopped", "completed"]
    created_by: str
    created_at: str
    conclusions: dict[str, str] = Field(default_factory=dict)

    def is_running(self, now: str) -> bool:
        return self.status == "active" and self.start <= now < self.end

    def assign(self, user_id: str) -> str:
        """The user's variant: sticky, deterministic, following the cumulative split."""
        digest = hashlib.sha256(f"{self.experiment_id}:{self.salt}:{user_id}".encode()).digest()
        bucket = int.from_bytes(digest[:8], "big") % BUCKETS
        edge = 0.0
        for name in sorted(self.split):  # a fixed order: the same user, the same variant
            edge += self.split[name] * BUCKETS
            if bucket < round(edge):
                return name
        return sorted(self.split)[-1]


class ExperimentDesign(BaseModel):
    """What ``POST /v1/experiments`` accepts."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model_id: str = Field(min_length=1, max_length=63)
    variants: dict[str, Annotated[str, Field(max_length=64)]] = Field(min_length=2, max_length=10)
    split: dict[str, float] = Field(min_length=2, max_length=10)
    metrics: list[Metric] = Field(min_length=1, max_length=20)
    start: str | None = Field(None, max_length=40, description="ISO 8601; default now.")
    end: str | None = Field(None, max_length=40, description="ISO 8601; default start + 30 days.")
    salt: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _coherent(self) -> ExperimentDesign:
        if "control" not in self.variants:
            raise ValueError("one variant must be named 'control'")
        if set(self.split) != set(self.variants):
            raise ValueError("split must name exactly the variants")
        if any(w <= 0 for w in self.split.values()):
            raise ValueError("split weights must be positive: a variant with no traffic is no arm")
        if abs(sum(self.split.values()) - 1.0) > SPLIT_TOLERANCE:
            raise ValueError(f"split must sum to 1 within {SPLIT_TOLERANCE}")
        if len({m.name for m in self.metrics}) != len(self.metrics):
            raise ValueError("metric names must be unique")
        for moment in (self.start, self.end):
            if moment is not None:
                _parse(moment)
        return self


def _parse(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return rfc3339(moment)


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

    # --- design ------------------------------------------------------------------------
    def create(self, design: ExperimentDesign, *, actor: str) -> Experiment:
        for name, version in design.variants.items():
            try:
                self._registry.get_version(design.model_id, version)
            except NotFoundError:
                raise InvalidValuesError(
                    f"variant {name!r}: {design.model_id} has no version {version!r}",
                    details=[{"field": f"variants.{name}", "rule": "registered_version"}],
                ) from None
        if self.active_for(design.model_id) is not None:
            raise ConflictError(f"{design.model_id} already has an active experiment")
        now = self._clock()
        start = _iso(_parse(design.start)) if design.start else now
        end = (
            _iso(_parse(design.end))
            if design.end
            else _iso(_parse(start) + timedelta(days=DEFAULT_DAYS))
        )
        if end <= start:
            raise InvalidValuesError(
                "end must be after start", details=[{"field": "end", "rule": "after_start"}]
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
        )
        self._documents.create(EXPERIMENTS, experiment.experiment_id, _dump(experiment))
        return experiment

    def get(self, experiment_id: str) -> Experiment:
        """The experiment; one past its end is completed here, at first touch."""
        known = _plain(experiment_id) and valid_name(experiment_id)
        doc = self._documents.get(EXPERIMENTS, experiment_id) if known else None
        if doc is None:
            raise NotFoundError(f"experiment {experiment_id!r} does not exist")
        experiment = Experiment.model_validate(doc.data)
        if experiment.status == "active" and self._clock() >= experiment.end:
            experiment = self.finish(experiment, "completed")
        return experiment

    def active_for(self, model_id: str) -> Experiment | None:
        docs = self._documents.query(
            EXPERIMENTS, [Filter("model_id", "==", model_id), Filter("status", "==", "active")]
        )
        now = self._clock()
        running = [Experiment.model_validate(d.data) for d in docs]
        return next((e for e in running if e.is_running(now)), None)

    def finish(self, experiment: Experiment, status: Literal["stopped", "completed"]) -> Experiment:
        """Stop or complete; a completed experiment records each variant's conclusion, keyed by
        its version, which is what a promotion gate asks for."""
        by_variant = conclusion(self.results(experiment)) if status == "completed" else {}
        conclusions = {experiment.variants[name]: c for name, c in by_variant.items()}
        changes = {"status": status, "conclusions": conclusions}
        self._documents.update(EXPERIMENTS, experiment.experiment_id, changes)
        return experiment.model_copy(update=changes)

    # --- exposure and outcomes ---------------------------------------------------------
    def expose(self, experiment: Experiment, request_id: str, variant: str, subject: str) -> None:
        """Remember which variant served a request, and count the exposure. The assignment
        holds the user's id, so it expires (Firestore TTL) when retention ends."""
        at = self._clock()
        self._documents.create(
            ASSIGNMENTS,
            f"{experiment.experiment_id}:{request_id}",
            {
                "experiment_id": experiment.experiment_id,
                "request_id": request_id,
                "variant": variant,
                "version": experiment.variants[variant],
                "subject": subject,
                "at": at,
                EXPIRE_AT: _iso(_parse(at) + self._retention),
            },
        )
        shard = _shard_random.randrange(SHARDS)
        doc_id = f"{experiment.experiment_id}:{variant}:{shard}"

        def count(tx: Transaction) -> None:
            found = tx.get(EXPOSURES, doc_id)
            total = int(found.data["count"]) + 1 if found else 1
            tx.set(
                EXPOSURES,
                doc_id,
                {
                    "experiment_id": experiment.experiment_id,
                    "variant": variant,
                    "shard": shard,
                    "count": total,
                },
            )

        self._documents.transaction(count)

    def record_outcome(
        self, experiment: Experiment, request_id: str, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write an outcome once: the same body again is the same answer and no write."""
        metrics = {m.name: m for m in experiment.metrics}
        problems: list[dict[str, Any]] = []
        for name, value in values.items():
            metric = metrics.get(name)
            if metric is None:
                problems.append({"field": f"values.{name}", "rule": "unknown_metric"})
            elif metric.type == "binary" and not (
                isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1))
            ):
                problems.append({"field": f"values.{name}", "rule": "boolean", "value": value})
            elif metric.type == "continuous" and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                problems.append({"field": f"values.{name}", "rule": "number", "value": value})
        if problems or not values:
            raise InvalidValuesError(
                "outcome values must name the experiment's metrics with values of their type",
                details=problems or [{"field": "values", "rule": "not_empty"}],
            )
        raw_sha = _fingerprint(values)
        values = {
            name: bool(value) if metrics[name].type == "binary" else float(value)
            for name, value in values.items()
        }
        body_sha = _fingerprint(values)
        outcome_id = f"{experiment.experiment_id}:{request_id}"
        known = _plain(request_id) and valid_name(outcome_id)
        assignment = self._documents.get(ASSIGNMENTS, outcome_id) if known else None
        if assignment is None:
            raise NotFoundError(
                f"request {request_id!r} was never assigned in experiment "
                f"{experiment.experiment_id}"
            )
        variant = assignment.data["variant"]
        shard = _shard_random.randrange(SHARDS)
        answer = {
            "experiment_id": experiment.experiment_id,
            "request_id": request_id,
            "variant": variant,
            "values": dict(values),
        }

        def write(tx: Transaction) -> bool:
            existing = tx.get(OUTCOMES, outcome_id)
            if existing is not None:
                # outcomes written before values were normalised kept the raw fingerprint
                if existing.data["body_sha256"] not in (body_sha, raw_sha):
                    raise ConflictError(f"request {request_id!r} already has a different outcome")
                return False
            shards = {
                name: tx.get(AGGREGATES, f"{experiment.experiment_id}:{variant}:{name}:{shard}")
                for name in values
            }
            tx.create(
                OUTCOMES, outcome_id, {**answer, "body_sha256": body_sha, "at": self._clock()}
            )
            for name, value in values.items():
                found = shards[name]
                arm = (
                    ArmAggregate.from_dict(found.data["aggregate"])
                    if found
                    else _empty(metrics[name])
                )
                arm.add(float(value))
                tx.set(
                    AGGREGATES,
                    f"{experiment.experiment_id}:{variant}:{name}:{shard}",
                    {
                        "experiment_id": experiment.experiment_id,
                        "variant": variant,
                        "metric": name,
                        "shard": shard,
                        "aggregate": arm.to_dict(),
                    },
                )
            return True

        written = self._documents.transaction(write)
        return {**answer, "written": written}

    # --- results -----------------------------------------------------------------------
    def results(self, experiment: Experiment) -> dict[str, Any]:
        arms: dict[str, dict[str, ArmAggregate]] = {
            v: {m.name: _empty(m) for m in experiment.metrics} for v in experiment.variants
        }
        for doc in self._documents.query(
            AGGREGATES, [Filter("experiment_id", "==", experiment.experiment_id)]
        ):
            arms[doc.data["variant"]][doc.data["metric"]].merge(
                ArmAggregate.from_dict(doc.data["aggregate"])
            )
        exposures = dict.fromkeys(experiment.variants, 0)
        for doc in self._documents.query(
            EXPOSURES, [Filter("experiment_id", "==", experiment.experiment_id)]
        ):
            exposures[doc.data["variant"]] += int(doc.data["count"])
        return results(arms, experiment.metrics, experiment.split, exposures)


def _fingerprint(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(values), sort_keys=True).encode()).hexdigest()


def _empty(metric: Metric) -> ArmAggregate:
    return ArmAggregate.continuous() if metric.type == "continuous" else ArmAggregate.binary()


def _dump(experiment: Experiment) -> dict[str, Any]:
    return experiment.model_dump(mode="json")


def _plain(identifier: str) -> bool:
    return 0 < len(identifier) <= 128 and all(c.isalnum() or c in "._:-" for c in identifier)
