"""Reading and writing the data artifacts of fitted models: one JSON document each.

A fitted linear model is a handful of arrays. Kept as JSON under a format tag instead of
a pickle, it loads without importing scikit-learn or joblib (seconds of a cold start),
runs no code while loading, and is checked field by field by a closed schema. The bytes
are canonical (sorted keys, no whitespace; floats written by ``repr``, which reads back
to the same double), so the same fit gives the same bytes and the same SHA-256.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from common.core.errors import IntegrityError, ServiceError
from common.core.validation import field_name
from common.models.base import joblib_load

M = TypeVar("M", bound=BaseModel)


def canonical_json(document: Any) -> bytes:
    """The one byte form of a document; NaN and infinities are refused, not written."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def json_or_joblib(data: bytes) -> tuple[Any, bool]:
    """The payload of verified bytes, and whether it was JSON.

    JSON is tried first: a data artifact never reaches joblib, so serving one never
    imports scikit-learn. Anything else is unpickled (a user's own fitted pipeline).
    """
    try:
        return json.loads(data), True
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError
        pass
    try:
        return joblib_load(data), False
    except ServiceError:
        raise  # a version mismatch, or a function without scikit-learn, keeps its own error
    except Exception as exc:
        raise IntegrityError("artifact is neither JSON nor a joblib file") from exc


def validated(schema: type[M], payload: Any, what: str) -> M:
    """The payload as ``schema``, or an IntegrityError naming the first bad field."""
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        loc = errors[0]["loc"]
        where = (
            field_name([p if isinstance(p, int) else str(p) for p in loc]) if loc else "document"
        )
        raise IntegrityError(
            f"invalid {what} ({len(errors)} problem(s)); {where}: {errors[0]['msg']}"
        ) from None
