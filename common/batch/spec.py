"""What a batch job is asked for, where it may read and write, and what its record holds.

Inputs and outputs stay under ``batch/`` in the artifact store, so a job can neither read
nor overwrite a model's artifact (``models/``) or a report; a location is refused (422)
before anything is listed or written.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from common.core.errors import InvalidValuesError
from common.core.validation import StrictModel

JOBS = "batch_jobs"
SHARDS = "batch_shards"
OUTPUTS = "batch_outputs"
"""One document per output prefix in use, so two jobs never write the same objects."""

BATCH_PREFIX = "batch/"
State = Literal["running", "succeeded", "failed", "cancelled"]
FINAL_STATES: frozenset[str] = frozenset(("succeeded", "failed", "cancelled"))
FIRST_ERRORS = 10
"""How many of a job's first errors its record lists."""

_SEGMENT = r"[A-Za-z0-9_.@+=-]+"
_GLOB_SEGMENT = r"[A-Za-z0-9_.@+=*?\[\]!-]+"
_INPUT = re.compile(rf"^{_GLOB_SEGMENT}(/{_GLOB_SEGMENT})*/?$")
_OUTPUT = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*/$")


def _refuse(field: str, value: str, rule: str, message: str) -> InvalidValuesError:
    return InvalidValuesError(
        f"{field}: {message}",
        details=[
            {"field": field, "path": [field], "rule": rule, "message": message, "value": value}
        ],
    )


def _inside_batch(field: str, value: str, pattern: re.Pattern[str], shape: str) -> str:
    """``value`` (keys, the store's URI already taken off) checked to name keys under
    ``batch/`` only."""
    key = value
    parts = key.rstrip("/").split("/")
    if not pattern.fullmatch(key) or any(p in {".", ".."} for p in parts):
        raise _refuse(field, value, "artifact_location", f"must be {shape}")
    if not key.startswith(BATCH_PREFIX) or key == BATCH_PREFIX:
        raise _refuse(
            field,
            value,
            "batch_prefix",
            f"must be under {BATCH_PREFIX} in the artifact store (models and reports are "
            "out of a batch job's reach)",
        )
    return key


def input_location(value: str) -> str:
    return _inside_batch(
        "input_uri",
        value,
        _INPUT,
        "an object key, a prefix ending in '/' or a glob (*, ?, [..]) of keys",
    )


def output_location(value: str) -> str:
    return _inside_batch("output_prefix", value, _OUTPUT, "a prefix of keys ending in '/'")


def has_glob(key: str) -> bool:
    return any(c in key for c in "*?[")


class BatchJobRequest(StrictModel):
    """``POST /v1/batch-jobs``: one model at one version (named, or the stage's version
    resolved now), JSONL input under ``batch/``, outputs under a new prefix there."""

    model: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@+-]+$")
    version: str | None = Field(None, max_length=64)
    stage: Literal["production"] | None = None
    input_uri: str = Field(min_length=1, max_length=1024)
    output_prefix: str = Field(min_length=1, max_length=1024)
    key_field: str | None = Field(None, min_length=1, max_length=128)
    max_error_rate: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_version(self) -> BatchJobRequest:
        if (self.version is None) == (self.stage is None):
            raise InvalidValuesError(
                "name exactly one of version and stage",
                details=[
                    {
                        "field": "version",
                        "path": ["version"],
                        "rule": "version_or_stage",
                        "message": "give a version (e.g. 1.2.0) or stage 'production', not "
                        "both or neither",
                    }
                ],
            )
        return self


class Shard(StrictModel):
    """Rows ``first_line``.. of one input file, bytes ``start`` to ``end``."""

    source: str
    start: int
    end: int
    first_line: int
    rows: int


def shard_id(job_id: str, index: int) -> str:
    return f"{job_id}-{index:05d}"


def output_key(prefix: str, what: Literal["predictions", "errors"], index: int) -> str:
    return f"{prefix}{what}-{index:05d}.jsonl"


def view(job: dict[str, Any], now_s: float) -> dict[str, Any]:
    """What ``GET /v1/batch-jobs/{id}`` shows: the record without its plan, with the
    rate and the time left estimated from the rows committed so far."""
    shown = {k: v for k, v in job.items() if k not in {"plan", "next_shard"}}
    rows_done = int(job["rows_done"])
    started = datetime.fromisoformat(job["created_at"]).timestamp()
    until = job.get("finished_at") or job.get("last_commit_at")
    elapsed = (datetime.fromisoformat(until).timestamp() if until else now_s) - started
    rate = rows_done / elapsed if rows_done and elapsed > 0 else None
    left = int(job["rows_total"]) - rows_done
    shown["rows_per_s"] = round(rate, 1) if rate else None
    shown["estimated_seconds_left"] = (
        0 if job["state"] in FINAL_STATES else (round(left / rate, 1) if rate else None)
    )
    shown["error_rate"] = round(job["errors"] / rows_done, 6) if rows_done else 0.0
    return shown
