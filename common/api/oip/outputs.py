"""Predictions to named output tensors: one output per field, flattened like inputs.

Each field of a prediction (nested objects flattened with dotted names) is one output:
numbers ``FP64`` (``INT64`` when every row holds an integer), text ``BYTES``, flags
``BOOL``; a list of numbers or texts a ``[rows, k]`` tensor padded with null to the longest
row; anything else (a list of objects) one JSON document per row, ``BYTES`` with
``content_type: json``. A value a row lacks is null (numpy reads NaN). Declared outputs (a
version's signature) come first, with their datatype wherever the values fit it; a declared
output whose object is null (the DCF's ``monte_carlo`` when not asked for) is answered
null, and that object is no output of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import orjson

from common.api.oip.tensors import BOOL, BYTES, FP64, INT64, JSON, TEXT, TensorSpec
from common.core.errors import MalformedRequestError

_NAMES_SHOWN = 12

_JSON_KIND = (BYTES, False, JSON)


def output_tensors(
    predictions: Sequence[Any],
    declared: Sequence[TensorSpec] = (),
    wanted: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One output per flattened field of the predictions, declared outputs first with their
    declared datatype where the values fit it; ``wanted`` keeps only those named (400 for
    a name the predictions do not have)."""
    columns = _columns(predictions, declared)
    specs = _specs(columns, declared)
    if wanted is not None:
        known = {spec.name: spec for spec in specs}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            names = ", ".join(list(known)[:_NAMES_SHOWN]) + (
                ", ..." if len(known) > _NAMES_SHOWN else ""
            )
            raise MalformedRequestError(
                f"unknown output(s) {', '.join(map(repr, unknown))}; "
                f"this model's outputs are {names}",
                details=[{"rule": "unknown_output", "output": name} for name in unknown],
            )
        specs = [known[name] for name in wanted]
    count = len(predictions)
    return [_tensor(spec, columns.get(spec.name, [None] * count)) for spec in specs]


def output_specs(predictions: Sequence[Any]) -> list[TensorSpec]:
    """The outputs that predictions like these give: a version's recorded outputs make its
    metadata, so the metadata is what the encoder answers."""
    return _specs(_columns(predictions), ())


def _columns(
    predictions: Sequence[Any], declared: Sequence[TensorSpec] = ()
) -> dict[str, list[Any]]:
    """Each flattened field's values, row by row. An object that is null in every row is
    no output of its own when its fields are outputs (another row's, or declared ones):
    each of its fields is null there instead, as the metadata lists them."""
    columns: dict[str, list[Any]] = {}
    for row, prediction in enumerate(predictions):
        leaves: dict[str, Any] = {}
        _leaves(prediction, "", leaves)
        for name, value in leaves.items():
            columns.setdefault(name, [None] * len(predictions))[row] = value
    parents = _parents([*columns, *(spec.name for spec in declared)])
    return {
        name: values
        for name, values in columns.items()
        if not (name in parents and all(v is None for v in values))  # a null object's slot
    }


def _parents(names: list[str]) -> set[str]:
    """Every dotted prefix of the names (``a`` and ``a.b`` of ``a.b.c``): a prefix found
    already brought its own, so each name stops at the first it shares."""
    found: set[str] = set()
    for name in names:
        end = name.rfind(".")
        while end > 0 and name[:end] not in found:
            found.add(name[:end])
            end = name.rfind(".", 0, end)
    return found


def _leaves(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            _leaves(inner, f"{prefix}{key}.", out)
    else:
        out[prefix[:-1] or "prediction"] = value


def _kind(value: Any) -> tuple[str, bool, str | None] | None:
    """(datatype, is a vector, content type) of one value; None for null."""
    if value is None:
        return None
    scalar = _scalar(value)
    if scalar is not None:
        return scalar, False, TEXT if scalar == BYTES else None
    if isinstance(value, list | tuple):
        inner = {_scalar(v) for v in value if v is not None}
        datatype = _unify(inner)
        if None not in inner and datatype is not None:
            return datatype, True, TEXT if datatype == BYTES else None
        if not inner:
            return FP64, True, None  # empty or all-null: a vector of unknown element
    return _JSON_KIND


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, Integral):
        return INT64
    if isinstance(value, Real):
        return FP64
    if isinstance(value, str):
        return BYTES
    return None


def _unify(datatypes: set[str | None]) -> str | None:
    if datatypes <= {INT64}:
        return INT64 if datatypes else None
    if datatypes <= {INT64, FP64}:
        return FP64
    return next(iter(datatypes)) if len(datatypes) == 1 else None


def _specs(columns: Mapping[str, list[Any]], declared: Sequence[TensorSpec]) -> list[TensorSpec]:
    by_name = {spec.name: spec for spec in declared}
    order = [*by_name, *(name for name in columns if name not in by_name)]
    return [_spec(name, columns.get(name, []), by_name.get(name)) for name in order]


def _spec(name: str, values: list[Any], declared: TensorSpec | None) -> TensorSpec:
    kinds = {kind for kind in map(_kind, values) if kind is not None}
    has_null = any(v is None for v in values)
    vectors = {kind[1] for kind in kinds if kind != _JSON_KIND}
    if _JSON_KIND in kinds or len(vectors) > 1:
        observed: tuple[str, bool, str | None] | None = _JSON_KIND
    elif not kinds:
        observed = None
    else:
        vector = vectors.pop()
        datatype = _unify({datatype for datatype, _, _ in kinds})
        if datatype is None:
            observed = _JSON_KIND
        else:
            lengths = {len(v) for v in values if v is not None} if vector else set()
            padded = (
                has_null
                or len(lengths) > 1
                or any(x is None for v in values if isinstance(v, list | tuple) for x in v)
            )
            if padded and datatype == INT64:
                datatype = FP64  # a missing value reads as NaN, which integers cannot hold
            observed = (
                _JSON_KIND
                if padded and datatype == BOOL
                else (datatype, vector, TEXT if datatype == BYTES else None)
            )
    if declared is not None and (observed is None or _fits_declared(observed, declared)):
        return declared
    if observed is None:
        return TensorSpec(name, FP64)
    datatype, vector, content = observed
    return TensorSpec(name, datatype, (-1, -1) if vector else (-1,), content_type=content)


def _fits_declared(observed: tuple[str, bool, str | None], declared: TensorSpec) -> bool:
    if declared.content_type == JSON:
        return True
    datatype, vector, content = observed
    if vector != declared.vector or content == JSON:
        return False
    return datatype == declared.datatype or (declared.datatype == FP64 and datatype == INT64)


def _tensor(spec: TensorSpec, values: list[Any]) -> dict[str, Any]:
    count = len(values)
    data: list[Any]
    if spec.content_type == JSON:
        data = [None if v is None else _json_text(v) for v in values]
        shape = [count]
    elif spec.vector:
        width = max((len(v) for v in values if isinstance(v, list | tuple)), default=0)
        data = []
        for value in values:
            row = list(value) if isinstance(value, list | tuple) else []
            data.extend(row + [None] * (width - len(row)))
        shape = [count, width]
    else:
        data, shape = list(values), [count]
    tensor: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": shape}
    if spec.content_type is not None:
        tensor["parameters"] = {"content_type": spec.content_type}
    tensor["data"] = data
    return tensor


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
