"""SQL for document queries, with Firestore's semantics, built from fixed fragments.

User values and field paths only ever travel as parameters; the SQL text is assembled
from constants, so no filter can change the statement's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.backends import _support
from common.backends.base import Filter, Order, check_name

# Firestore's cross-type order: null < booleans < numbers < strings < arrays < maps.
_TYPE_RANK = (
    "CASE json_type(data, ?) WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1"
    " WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 WHEN 'array' THEN 4"
    " ELSE 5 END"
)


def _typed(path: str, value: Any) -> tuple[str, list[Any]]:
    """SQL true when the field holds a value of the same kind as ``value``."""
    if isinstance(value, bool):
        return "json_type(data, ?) IN ('true', 'false')", [path]
    if isinstance(value, int | float):
        return "json_type(data, ?) IN ('integer', 'real')", [path]
    return "json_type(data, ?) = 'text'", [path]


def _param(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _equals(path: str, value: Any) -> tuple[str, list[Any]]:
    kind, params = _typed(path, value)
    return f"({kind} AND json_extract(data, ?) = ?)", [*params, path, _param(value)]


def _condition(flt: Filter) -> tuple[str, list[Any]]:
    _support.check_filter(flt)
    path = "$." + flt.field
    present = "json_type(data, ?) != 'null'"  # a missing field (SQL NULL) fails this too
    if flt.op == "in":
        parts = [_equals(path, item) for item in flt.value]
        return "(" + " OR ".join(sql for sql, _ in parts) + ")", [p for _, ps in parts for p in ps]
    if flt.value is None:
        if flt.op == "==":
            return "json_type(data, ?) = 'null'", [path]
        return present, [path]
    if flt.op == "==":
        return _equals(path, flt.value)
    if flt.op == "!=":
        sql, params = _equals(path, flt.value)
        return f"({present} AND NOT {sql})", [path, *params]
    kind, params = _typed(path, flt.value)
    return f"({kind} AND json_extract(data, ?) {flt.op} ?)", [*params, path, _param(flt.value)]


def build_select(
    collection: str,
    filters: Sequence[Filter],
    order_by: Sequence[Order],
    limit: int | None,
) -> tuple[str, list[Any]]:
    """The SELECT for a query and its parameters."""
    check_name("collection", collection)
    _support.check_limit(limit)
    where: list[str] = ["collection = ?"]
    params: list[Any] = [collection]
    for flt in filters:
        sql, values = _condition(flt)
        where.append(sql)
        params.extend(values)
    if not order_by:  # Firestore orders by the inequality fields when none is given
        fields = sorted({f.field for f in filters if f.op in _support.INEQUALITY_OPS})
        order_by = [Order(field) for field in fields]
    order_sql: list[str] = []
    order_params: list[Any] = []
    for order in order_by:
        path, direction = "$." + order.field, "DESC" if order.descending else "ASC"
        where.append("json_type(data, ?) IS NOT NULL")  # ordering skips missing fields
        params.append(path)
        order_sql += [f"{_TYPE_RANK} {direction}", f"json_extract(data, ?) {direction}"]
        order_params += [path, path]
    last = "DESC" if order_by and order_by[-1].descending else "ASC"
    order_sql.append(f"id {last}")
    # Only fixed fragments are joined here; every value is a bound parameter.
    conditions = " AND ".join(where)
    ordered = " ORDER BY " + ", ".join(order_sql) + (" LIMIT ?" if limit is not None else "")
    sql = "SELECT id, data, revision FROM documents WHERE " + conditions + ordered  # noqa: S608  # nosec B608
    params.extend(order_params)
    if limit is not None:
        params.append(limit)
    return sql, params
