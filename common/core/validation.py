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


def problems_from(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    problems = []
    for err in exc.errors(include_url=False):
        path = [*prefix, *(_shown_key(part) for part in err["loc"])]
        problem: dict[str, Any] = {
            "field": field_name(path),
            "path": path,
            "rule": err["type"],
            "message": err["msg"],
        }
        if err["type"] != "missing":
            problem["value"] = _shown_value(err.get("input"))
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
        raise_invalid(problems_from(exc, prefix), max_details, what)
        raise  # unreachable: raise_invalid always raises
