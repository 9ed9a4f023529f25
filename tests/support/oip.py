"""Open Inference Protocol tensors from plain rows and back, as a client builds and reads
them from a model's metadata: what the v2 tests compare with ``/v1/predict``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def lookup(row: Mapping[str, Any], dotted: str) -> Any:
    value: Any = row
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def layout(row: Mapping[str, Any], prefix: str = "") -> dict[str, int | None]:
    """Each dotted field a row gives, with its length if a list: rows of one layout make
    one columnar request."""
    out: dict[str, int | None] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            out.update(layout(value, f"{prefix}{key}."))
        elif value is not None:
            out[prefix + key] = len(value) if isinstance(value, list) else None
    return out


def columns(
    inputs: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Per input of the metadata that some row gives: a numpy array of every row's value
    (an array input as a [rows, k] array). Every row must give the same inputs."""
    out: dict[str, Any] = {}
    for spec in inputs:
        values = [lookup(row, spec["name"]) for row in rows]
        given = [v is not None for v in values]
        if not any(given):
            continue
        assert all(given), f"{spec['name']} is given by some rows only"
        if spec["datatype"] == "BYTES":
            content = (spec.get("parameters") or {}).get("content_type", "str")
            texts = [v if content == "str" else json.dumps(v) for v in values]
            out[spec["name"]] = np.array(texts, dtype=np.object_)
        elif spec["datatype"] == "BOOL":
            out[spec["name"]] = np.array(values, dtype=bool)
        elif spec["datatype"] == "INT64":
            out[spec["name"]] = np.array(values, dtype=np.int64)
        else:
            out[spec["name"]] = np.array(values, dtype=np.float64)
    return out


def request_inputs(arrays: Mapping[str, Any], datatypes: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ``inputs`` of a JSON inference request for named arrays."""
    return [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": datatypes[name],
            "data": array.flatten().tolist(),
        }
        for name, array in arrays.items()
    ]


def rows_of(outputs: Sequence[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
    """The predictions back from named outputs: dotted names nested, JSON documents
    parsed, a [rows, k] output's padding dropped, a null left out of its object."""
    rows: list[dict[str, Any]] = [{} for _ in range(count)]
    for output in outputs:
        data, shape = list(output["data"]), output["shape"]
        json_text = (output.get("parameters") or {}).get("content_type") == "json"
        for i, row in enumerate(rows):
            if len(shape) == 2:
                value: Any = data[i * shape[1] : (i + 1) * shape[1]]
                while value and value[-1] is None:
                    value.pop()
            else:
                value = data[i]
                if json_text and value is not None:
                    value = json.loads(value)
            target = row
            *parents, last = output["name"].split(".")
            for key in parents:
                target = target.setdefault(key, {})
            target[last] = value
    return rows


def without_nulls(value: Any) -> Any:
    """A prediction with null fields (and objects and lists left empty) dropped: a null
    field, an absent one and an empty list are one output value (an output row of nulls,
    or of none when no row of the batch has a value)."""
    if isinstance(value, Mapping):
        kept = {k: without_nulls(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
