"""An A/B experiment's design and stored record: variants, split, metrics, times, window.

A user's variant is a hash of experiment id, salt and user id into 10,000 buckets walked
along the cumulative split: deterministic and sticky while the weights stay the same. When
weights change, a user keeps their variant only if their bucket still falls in that
variant's range; the buckets that move are the ones the changed weights cover.

The times that decide attribution are recorded on the experiment: ``start``, ``end`` and,
when it is stopped, ``stopped_at``. Outcomes are taken until ``outcome_window_days`` after
the experiment stops serving (its end, or when it was stopped); then it completes.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from common.backends.base import rfc3339
from common.experiments.stats import Metric

BUCKETS = 10_000
SPLIT_TOLERANCE = 0.001
DEFAULT_DAYS = 30
DEFAULT_WINDOW_DAYS = 28
"""Days after an experiment stops serving during which its outcomes are still taken: an
IPO's first-day return is known the next day, whether it priced within range weeks later."""
MAX_WINDOW_DAYS = 365
EARLIEST = "1970-01-01T00:00:00Z"
LATEST = "9000-01-01T00:00:00Z"
"""A design's ``start`` and ``end`` lie from EARLIEST up to (not including) LATEST, in UTC:
far enough from the calendar's end (year 9999) that the default end and the close of the
outcome window can always be computed and written."""

Status = Literal["scheduled", "active", "collecting", "stopped", "completed"]
"""Stored: ``active`` (until stopped or completed), ``stopped``, ``completed``; an active
one is shown ``scheduled`` before its start and ``collecting`` after its end."""


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
    status: Status
    created_by: str
    created_at: str
    conclusions: dict[str, str] = Field(default_factory=dict)
    outcome_window_days: int = 0
    """0 for experiments stored before windows existed: they completed at their end."""
    stopped_at: str | None = None
    closes_at: str | None = None
    """When outcomes stop being taken and the conclusion is drawn (set at creation and stop)."""

    @model_validator(mode="before")
    @classmethod
    def _stored_before_units(cls, data: Any) -> Any:
        """Metrics stored without a unit were analysed per request; they still are."""
        if isinstance(data, dict) and isinstance(data.get("metrics"), list | tuple):
            data = {
                **data,
                "metrics": [
                    {"unit": "request", **m} if isinstance(m, dict) else m for m in data["metrics"]
                ],
            }
        return data

    def is_running(self, now: str) -> bool:
        return self.status == "active" and self.start <= now < self.end

    def as_of(self, now: str) -> Experiment:
        """The experiment as shown at ``now``: one stored as active is ``scheduled`` before
        its start and ``collecting`` after its end, as EXPERIMENTS.md defines them."""
        if self.status == "active" and now < self.start:
            return self.model_copy(update={"status": "scheduled"})
        if self.status == "active" and now >= self.end:
            return self.model_copy(update={"status": "collecting"})
        return self

    def served_at(self, at: str) -> bool:
        """Whether a prediction at ``at`` belongs to this experiment, by its recorded times."""
        until = min(self.end, self.stopped_at) if self.stopped_at else self.end
        return self.start <= at < until

    def closing_time(self) -> str:
        if self.closes_at is not None:
            return self.closes_at
        ended = min(self.end, self.stopped_at) if self.stopped_at else self.end
        return iso(parse(ended) + timedelta(days=self.outcome_window_days))

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

    def user_key(self, user_id: str) -> str:
        """A user's key inside this experiment: salted, so it names nobody outside it."""
        return hashlib.sha256(f"{self.salt}:{self.experiment_id}:{user_id}".encode()).hexdigest()


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
    outcome_window_days: int = Field(
        DEFAULT_WINDOW_DAYS,
        ge=0,
        le=MAX_WINDOW_DAYS,
        description="Days after the experiment stops serving during which outcomes are taken.",
    )

    @field_validator("variants")
    @classmethod
    def _has_control(cls, variants: dict[str, str]) -> dict[str, str]:
        if "control" not in variants:
            raise PydanticCustomError("control", "one variant must be named 'control'")
        return variants

    @field_validator("split")
    @classmethod
    def _split(cls, split: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        """Checked on the field, so a 422 names ``split`` (the variants, when they are
        valid themselves, are known here: fields are validated in order)."""
        variants = info.data.get("variants")
        if variants is not None and set(split) != set(variants):
            names = ", ".join(sorted(variants))
            message = "split must name exactly the variants ({names})"
            raise PydanticCustomError("split_names", message, {"names": names})
        if any(w <= 0 for w in split.values()):
            message = "split weights must be positive: a variant with no traffic is no arm"
            raise PydanticCustomError("split_positive", message)
        if abs(sum(split.values()) - 1.0) > SPLIT_TOLERANCE:
            raise PydanticCustomError("split_sum", f"split must sum to 1 within {SPLIT_TOLERANCE}")
        return split

    @field_validator("metrics")
    @classmethod
    def _unique(cls, metrics: list[Metric]) -> list[Metric]:
        if len({m.name for m in metrics}) != len(metrics):
            raise PydanticCustomError("unique_names", "metric names must be unique")
        return metrics

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, text: str | None, info: ValidationInfo) -> str | None:
        if text is not None:
            within(text, str(info.field_name))
        return text


def parse(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None


def within(text: str, name: str) -> datetime:
    """``text`` as a time in UTC from EARLIEST up to LATEST; ValueError naming ``name``
    otherwise (an offset can carry a time past either end of the calendar)."""
    moment = parse(text)
    try:
        utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        utc = None
    if utc is None or not parse(EARLIEST) <= utc < parse(LATEST):
        raise ValueError(f"{name} must be from {EARLIEST} up to {LATEST} (UTC), not {text!r}")
    return utc


def iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return rfc3339(moment)
