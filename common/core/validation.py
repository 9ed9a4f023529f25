"""Schema validation that names every bad field, its value and the rule it broke.

Schemas are pydantic models declared strict (no silent coercion of "1" to 1), closed
(unknown fields refused) and finite (NaN and infinities refused). Validation problems
become one 422 whose details list each problem with a JSON-style path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from common.core.errors import InvalidValuesError

T = TypeVar("T")

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
"""The configuration every request and instance schema uses."""

_MAX_VALUE_CHARS = 80


class StrictModel(BaseModel):
    model_config = STRICT


def field_name(path: Sequence[str | int]) -> str:
    """``("instances", 3, "revenue")`` -> ``instances[3].revenue``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(body)"


def _shown_key(part: str | int) -> str | int:
    """An unknown key is echoed in the field name; a huge one must not bloat the answer."""
    if isinstance(part, str) and len(part) > _MAX_VALUE_CHARS:
        return part[:_MAX_VALUE_CHARS] + "..."
    return part


def _shown_value(value: Any) -> Any:
    """Echo scalars back so a client sees what was refused; never echo large payloads."""
    if isinstance(value, float) and value != value:  # NaN is not valid JSON
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= _MAX_VALUE_CHARS else value[:_MAX_VALUE_CHARS] + "..."
    return f"<{type(value).__name__}>"


_NO_DATA = object()


def _sent_path(loc: Sequence[str | int], data: Any) -> list[str | int]:
    """The part of pydantic's location the client wrote: a union's branch names
    (``label_correct.float``, ``.bool``) are not keys of what was sent and are dropped."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        in_list = isinstance(current, list) and isinstance(part, int) and part < len(current)
        if (isinstance(current, dict) and part in current) or in_list:
            current = current[part]
        elif isinstance(current, dict) and i == len(loc) - 1:
            current = _NO_DATA  # a missing key, named as the client should send it
        else:
            continue  # a branch of a union or a validator's tag: not part of the body
        path.append(part)
    return path


def problems_from(
    exc: ValidationError, prefix: Sequence[str | int] = (), data: Any = _NO_DATA
) -> list[dict[str, Any]]:
    """One detail per bad field; with ``data`` (what was validated), the errors of a
    union's branches collapse into one detail on the field the client sent."""
    problems: list[dict[str, Any]] = []
    by_field: dict[str, dict[str, Any]] = {}
    for err in exc.errors(include_url=False):
        loc = list(err["loc"]) if data is _NO_DATA else _sent_path(err["loc"], data)
        path = [*prefix, *(_shown_key(part) for part in loc)]
        name = field_name(path)
        seen = by_field.get(name)
        if seen is not None and data is not _NO_DATA and len(loc) < len(err["loc"]):
            if err["msg"] not in seen["message"]:  # another branch of the same union
                seen["message"] += f", or {err['msg'][0].lower()}{err['msg'][1:]}"
            continue
        problem: dict[str, Any] = {
            "field": name,
            "path": path,
            "rule": err["type"],
            "message": err["msg"],
        }
        if err["type"] != "missing":
            problem["value"] = _shown_value(err.get("input"))
        by_field[name] = problem
        problems.append(problem)
    return problems


def raise_invalid(problems: list[dict[str, Any]], max_details: int, what: str = "request") -> None:
    shown = problems[:max_details]
    more = len(problems) - len(shown)
    message = f"{what} has {len(problems)} invalid value(s): " + ", ".join(
        p["field"] for p in shown[:5]
    )
    if len(problems) > 5:
        message += ", ..."
    if more:
        shown.append({"field": None, "rule": "truncated", "message": f"{more} more not shown"})
    raise InvalidValuesError(message, details=shown)


def validate(
    schema: TypeAdapter[T],
    data: Any,
    *,
    prefix: Sequence[str | int] = (),
    max_details: int = 100,
    what: str = "request",
) -> T:
    """Validate with a prebuilt adapter (building one per call would dominate the cost)."""
    try:
        return schema.validate_python(data)
    except ValidationError as exc:
        raise_invalid(problems_from(exc, prefix, data), max_details, what)
        raise  # unreachable: raise_invalid always raises
