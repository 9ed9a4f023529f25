"""One shard's lines turned into output lines: parsed, validated and predicted as one
vectorised call, a bad line set aside with its error instead of failing the rest.

Every output line names its source file and line number (and key, when the job has a
key field) beside the prediction or the error, the error in the API's one shape
(``code``, ``message``, ``details``). The output is a function of the input lines and the
version alone, so two workers that finish the same shard write the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from common.core.errors import InvalidValuesError, MalformedRequestError, ServiceError
from common.core.validation import validate
from common.models.base import Component, ModelRuntime
from common.serving.pipeline import MAX_INSTANCES

_DUMP = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass
class Row:
    line: int
    key: Any
    instance: dict[str, Any] | None
    error: dict[str, Any] | None = None


def error_of(exc: ServiceError) -> dict[str, Any]:
    """The one error shape without a request id: a batch row has none."""
    error: dict[str, Any] = exc.body("")["error"]
    return error


def parse(data: bytes, first_line: int, key_field: str | None) -> list[Row]:
    """The non-blank lines of ``data``, numbered from ``first_line``; a line that is not
    one JSON object becomes a row holding its error."""
    rows = []
    for number, raw in enumerate(data.split(b"\n"), start=first_line):
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            bad = MalformedRequestError(f"line {number} is not valid JSON: {exc}")
            rows.append(Row(number, None, None, error_of(bad)))
            continue
        if not isinstance(value, dict):
            refused = InvalidValuesError(
                f"line {number} must be one JSON object (an instance), not {type(value).__name__}"
            )
            rows.append(Row(number, None, None, error_of(refused)))
            continue
        key = value.pop(key_field, None) if key_field else None
        rows.append(Row(number, key, value))
    return rows


@cache
def _one(runtime: type[ModelRuntime]) -> TypeAdapter[Any]:
    """Validates a single instance, for the rows of a batch that failed as a whole."""
    return TypeAdapter(runtime.instance_schema)


def _predict(
    runtime: ModelRuntime, instances: Sequence[Any], components: Mapping[str, Component]
) -> list[Any]:
    parameters = runtime.parameters_adapter().validate_python({})
    if components:
        return list(runtime.predict_composite(instances, parameters, components))
    return list(runtime.predict(instances, parameters))


def predict(
    runtime: ModelRuntime,
    rows: list[Row],
    components: Mapping[str, Component],
    *,
    max_details: int = 100,
) -> list[Any]:
    """Each row's prediction (None for a row with an error, which is set on the row).

    Rows go in batches of at most MAX_INSTANCES, the size a request may have, so every
    per-request bound of a model holds (the DCF's draws x instances, say). A batch is
    validated and predicted in one call; only when that refuses something (422) are its
    rows taken one by one, so a bad line costs its own batch a second pass. A fault of the
    service (5xx) is raised: the shard is given back and retried."""
    good = [row for row in rows if row.error is None]
    found: dict[int, Any] = {}
    for start in range(0, len(good), MAX_INSTANCES):
        batch = good[start : start + MAX_INSTANCES]
        outputs = _predict_batch(runtime, batch, components, max_details)
        found.update(zip((id(r) for r in batch), outputs, strict=True))
    return [found.get(id(row)) for row in rows]


def _predict_batch(
    runtime: ModelRuntime, batch: list[Row], components: Mapping[str, Component], max_details: int
) -> list[Any]:
    try:
        instances = type(runtime).instances_adapter().validate_python([r.instance for r in batch])
        return _predict(runtime, instances, components)
    except (ValidationError, ServiceError) as exc:
        if isinstance(exc, ServiceError) and exc.status >= 500:
            raise
        return [_predict_one(runtime, row, components, max_details) for row in batch]


def _predict_one(
    runtime: ModelRuntime, row: Row, components: Mapping[str, Component], max_details: int
) -> Any:
    try:
        instance = validate(_one(type(runtime)), row.instance, max_details=max_details, what="line")
        return _predict(runtime, [instance], components)[0]
    except ServiceError as exc:
        if exc.status >= 500:
            raise
        row.error = error_of(exc)
        return None


def output_lines(
    rows: list[Row], predictions: list[Any], source: str, key_field: str | None
) -> tuple[bytes, bytes]:
    """The shard's predictions file and errors file, one JSON object a line."""
    good, bad = bytearray(), bytearray()
    for row, prediction in zip(rows, predictions, strict=True):
        line: dict[str, Any] = {"source": source, "line": row.line}
        if key_field:
            line["key"] = row.key
        if row.error is not None:
            line["error"] = row.error
            bad += orjson.dumps(line, option=_DUMP) + b"\n"
        else:
            line["prediction"] = prediction
            good += orjson.dumps(line, option=_DUMP) + b"\n"
    return bytes(good), bytes(bad)
