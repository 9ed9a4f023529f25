"""Named input tensors to the instances a model validates.

A v2 request is columnar, as MLServer's pandas codec takes it: one input per field, each
row of every input one instance. ``decode_request`` checks each input against the
version's signature (name, datatype, shape, data length, element types) and rebuilds the
instances ``/v1/predict`` validates, dotted names un-flattened (``dcf.wacc`` becomes
``{"dcf": {"wacc": ...}}``); ``outputs.py`` does the reverse for predictions. Neither knows
routing or models, so any route that takes v2 tensors (an explanation, say) reuses them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, model_validator
from werkzeug.datastructures import Headers

from common.api.oip.tensors import BOOL, BYTES, FP64, INT64, JSON, TensorSpec
from common.core.errors import MalformedRequestError
from common.core.validation import StrictModel, problems_from

MAX_TENSORS = 500
MAX_VALUES = 100_000
"""Values in one tensor's ``data``: 1,000 rows of the longest array input, and then some;
the body's 10 MiB limit bounds the rest."""
MAX_PARAMETERS = 64
PROTOCOL_PARAMETERS = frozenset({"binary_data_output", "content_type", "priority", "timeout"})
"""Request parameters a client library adds for the protocol itself: accepted and left out
of the model's parameters (answers are always JSON, without binary tensor data)."""
RANGES = {
    **{f"INT{bits}": (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (0, 2**bits - 1) for bits in (8, 16, 32, 64)},
}
"""The values each integer datatype holds: a value outside is no value of that tensor."""
INTEGERS = frozenset(RANGES)
DATATYPES = INTEGERS | {"BOOL", "FP16", "FP32", "FP64", "BF16", "BYTES"}
_ACCEPTED = {FP64: INTEGERS | {FP64}, INT64: INTEGERS, BOOL: {BOOL}, BYTES: {BYTES}}
"""What each expected datatype takes: itself, and integers where they convert exactly."""
_NAMES_SHOWN = 12


class RequestInput(StrictModel):
    name: str = Field(min_length=1, max_length=256)
    shape: list[Annotated[int, Field(le=MAX_VALUES)]] = Field(min_length=1, max_length=8)
    """Each dimension at most MAX_VALUES: a shape of [10000000, 0] holds no value, and
    would otherwise have the rows built before their count is checked."""
    datatype: str = Field(min_length=1, max_length=16)
    parameters: dict[str, Any] | None = Field(None, max_length=MAX_PARAMETERS)
    data: list[Any] = Field(max_length=MAX_VALUES)


class RequestOutput(StrictModel):
    name: str = Field(min_length=1, max_length=256)
    parameters: dict[str, Any] | None = Field(None, max_length=MAX_PARAMETERS)


class InferenceRequest(StrictModel):
    """The protocol's inference request; anything that is not one is a 400."""

    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] | None = Field(None, max_length=MAX_PARAMETERS)
    inputs: list[RequestInput] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[RequestOutput] | None = Field(None, max_length=MAX_TENSORS)

    @model_validator(mode="wrap")
    @classmethod
    def _malformed(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A body that is not an inference request is malformed (400), as the protocol
        says, with each problem named; a binary tensor gets its own message."""
        tensors = data.get("inputs") if isinstance(data, dict) else None
        for tensor in tensors if isinstance(tensors, list) else []:
            params = tensor.get("parameters") if isinstance(tensor, dict) else None
            if isinstance(params, dict) and "binary_data_size" in params:
                raise binary_refusal(f"input {tensor.get('name')!r} is")
        try:
            return handler(data)
        except ValidationError as exc:
            problems = problems_from(exc, (), data)
            first = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise MalformedRequestError(
                f"not an inference request: {first['field']}: {first['message']}{more}",
                details=problems[:100],
            ) from None


BINARY_HEADER = "Inference-Header-Content-Length"
"""The binary tensor extension's header: the body is this many bytes of JSON, then the raw
tensor bytes (tritonclient's ``binary_data=True``)."""


def binary_refusal(subject: str) -> MalformedRequestError:
    """The one answer to binary tensor data, whichever way it is seen (``subject`` is
    "input 'x' is" or "the request's data is")."""
    return MalformedRequestError(
        f"{subject} sent as binary tensor data, which this server does not take: send "
        "every input's data as JSON (tritonclient: set_data_from_numpy(..., "
        "binary_data=False))"
    )


def refuse_binary_body(headers: Mapping[str, str] | Headers) -> None:
    """400 with the binary-data message for a body in the binary tensor extension, to be
    called before the body is parsed: only its first ``BINARY_HEADER`` bytes are JSON, so
    parsing the whole would answer "not valid JSON" instead. ``headers`` are the request's
    (Werkzeug's, which match names in any case)."""
    if headers.get(BINARY_HEADER) is not None:
        raise binary_refusal(f"the request's data ({BINARY_HEADER}) is")


@dataclass(frozen=True)
class Decoded:
    instances: list[dict[str, Any]]
    parameters: dict[str, Any]
    outputs: tuple[str, ...] | None
    """The outputs asked for by name; None for all."""


def _problem(
    rule: str, message: str, spec: TensorSpec | None, tensor: RequestInput | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": rule, "message": message}
    if tensor is not None or spec is not None:
        out["input"] = tensor.name if tensor is not None else spec.name if spec else None
    if spec is not None:
        out["expected"] = {"datatype": spec.datatype, "shape": list(spec.shape)}
    if tensor is not None:
        out["received"] = {"datatype": tensor.datatype, "shape": list(tensor.shape)}
    return out


def _refuse(problems: list[dict[str, Any]]) -> MalformedRequestError:
    first = problems[0]["message"]
    if len(problems) == 1:
        return MalformedRequestError(first, details=problems)
    return MalformedRequestError(
        f"{len(problems)} inputs are wrong; the first: {first}", details=problems[:100]
    )


def decode_request(
    request: InferenceRequest, inputs: Sequence[TensorSpec], *, max_rows: int
) -> Decoded:
    """The instances and model parameters of a request; 400 naming every wrong input."""
    specs = {spec.name: spec for spec in inputs}
    columns: dict[str, list[Any]] = {}
    problems: list[dict[str, Any]] = []
    for tensor in request.inputs:
        spec = specs.get(tensor.name)
        if tensor.name in columns:
            problems.append(
                _problem("duplicate", f"input {tensor.name!r} is given twice", spec, tensor)
            )
        elif spec is None:
            known = ", ".join(list(specs)[:_NAMES_SHOWN]) + (
                ", ..." if len(specs) > _NAMES_SHOWN else ""
            )
            message = (
                f"unknown input {tensor.name!r}; this model's inputs are {known} "
                "(the model's metadata lists them all)"
            )
            problems.append(_problem("unknown_input", message, None, tensor))
        else:
            rows = _rows(tensor, spec, problems)
            if rows is not None:
                columns[tensor.name] = rows
    for spec in inputs:
        if (
            not spec.optional
            and spec.name not in columns
            and not any(p.get("input") == spec.name for p in problems)
        ):
            shape = list(spec.shape)
            message = f"required input {spec.name!r} is missing ({spec.datatype}, shape {shape})"
            problems.append(_problem("missing_input", message, spec, None))
    sizes = {name: len(rows) for name, rows in columns.items()}
    if not problems and len(set(sizes.values())) > 1:
        counts = ", ".join(f"{name}: {size}" for name, size in list(sizes.items())[:_NAMES_SHOWN])
        problems.append(
            {
                "rule": "row_counts",
                "message": f"inputs have different numbers of rows ({counts}); "
                "every input holds one value per row",
                "rows": sizes,
            }
        )
    if problems:
        raise _refuse(problems)
    count = next(iter(sizes.values()), 0)
    if count == 0:
        raise MalformedRequestError("the inputs hold no rows; send at least one")
    if count > max_rows:
        raise MalformedRequestError(f"{count} rows in one request; at most {max_rows}")
    instances: list[dict[str, Any]] = [{} for _ in range(count)]
    for name, rows in columns.items():
        path = specs[name].path
        for instance, value in zip(instances, rows, strict=True):
            if value is not None:
                _put(instance, path, value)
    parameters = {
        key: value
        for key, value in (request.parameters or {}).items()
        if key not in PROTOCOL_PARAMETERS
    }
    wanted = (
        None if request.outputs is None else tuple(dict.fromkeys(o.name for o in request.outputs))
    )
    return Decoded(instances, parameters, wanted)


def _rows(
    tensor: RequestInput, spec: TensorSpec, problems: list[dict[str, Any]]
) -> list[Any] | None:
    """One value per row (a list per row for an array input), or None after recording
    the problem: datatype, shape, data length and element types are each checked."""
    name, shape = tensor.name, tensor.shape
    if tensor.datatype not in _ACCEPTED.get(spec.datatype, {spec.datatype}):
        what = "not a datatype of the protocol" if tensor.datatype not in DATATYPES else "wrong"
        message = (
            f"input {name!r} has datatype {tensor.datatype} ({what}); it takes {spec.datatype}"
        )
        problems.append(_problem("datatype", message, spec, tensor))
        return None
    width = 1
    if spec.vector:
        valid = len(shape) == 2 and (spec.shape[1] == -1 or shape[1] == spec.shape[1])
        width = shape[1] if len(shape) == 2 else 0
    else:
        valid = len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)
    if not valid or any(dim < 0 for dim in shape):
        want = "[rows, values per row]" if spec.vector else "[rows] or [rows, 1]"
        message = f"input {name!r} has shape {shape}; it takes {want} ({list(spec.shape)})"
        problems.append(_problem("shape", message, spec, tensor))
        return None
    values = _flat(tensor.data, shape)
    if values is None:
        message = (
            f"input {name!r} has shape {shape}, but its data is nested otherwise; "
            "send it flat (row-major) or nested exactly as its shape"
        )
        problems.append(_problem("data_shape", message, spec, tensor))
        return None
    expected = math.prod(shape)
    if len(values) != expected:
        message = (
            f"input {name!r} has shape {shape}, which holds {expected} value(s), "
            f"but its data has {len(values)}"
        )
        problems.append(_problem("data_length", message, spec, tensor) | {"values": len(values)})
        return None
    for index, value in enumerate(values):
        wrong = _wrong_element(value, tensor.datatype, spec)
        if wrong is not None:
            message = f"input {name!r} element {index} {wrong}"
            problems.append(_problem("element", message, spec, tensor) | {"index": index})
            return None
    if spec.content_type == JSON:
        try:
            values = [None if v is None else json.loads(v) for v in values]
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            message = f"input {name!r} holds JSON documents, one per row; one does not parse"
            problems.append(_problem("json", message, spec, tensor))
            return None
    if not spec.vector:
        return values
    rows = [values[i * width : (i + 1) * width] for i in range(shape[0])]
    return [None if all(v is None for v in row) else row for row in rows]


_TAKES = {
    FP64: "numbers",
    INT64: "integers",
    BOOL: "true or false",
    BYTES: "strings",
}


def _wrong_element(value: Any, datatype: str, spec: TensorSpec) -> str | None:
    """What is wrong with one element of a tensor of ``datatype`` for ``spec``, or None.
    An integer tensor's value must be an integer in its datatype's range, whatever the
    input takes: only then does it convert exactly, as the docs say."""
    if not _fits(value, spec):
        shown = "null" if value is None else type(value).__name__
        return f"is {shown}; {spec.datatype} takes {_TAKES[spec.datatype]}"
    if value is None or datatype not in RANGES:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        return f"is {type(value).__name__}; {datatype} takes integers"
    low, high = RANGES[datatype]
    if not low <= value <= high:  # the value itself is not shown: it may be 4,000 digits
        return f"is out of {datatype}'s range ({low} to {high})"
    return None


def _fits(value: Any, spec: TensorSpec) -> bool:
    if value is None:
        return spec.optional
    if spec.datatype == BOOL:
        return isinstance(value, bool)
    if spec.datatype == BYTES:
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if spec.datatype == INT64 else isinstance(value, int | float)


def _flat(data: list[Any], shape: Sequence[int]) -> list[Any] | None:
    """Row-major values of data given flat or nested exactly as ``shape`` (the protocol's
    two forms), without recursion; None for any other nesting, which would otherwise be
    read as rows it does not hold."""
    if not any(isinstance(value, list) for value in data):
        return list(data)
    level: list[Any] = [data]
    for size in shape:
        if any(not isinstance(part, list) or len(part) != size for part in level):
            return None
        level = [value for part in level for value in part]
    return None if any(isinstance(value, list) for value in level) else level


def _put(instance: dict[str, Any], path: list[str], value: Any) -> None:
    target = instance
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
