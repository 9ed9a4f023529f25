"""The protocol's error shape: ``{"error": "<message>"}``, with this platform's ``code``,
``details`` and ``request_id`` beside it.

A value a model's schema refuses is reported at ``instances[i].field`` by validation; here
such a detail also names the input (``dcf.wacc``) and the row, as a v2 client sent them.
"""

from __future__ import annotations

from typing import Any

from common.core.errors import ServiceError


def error_body(error: ServiceError, request_id: str) -> dict[str, Any]:
    shaped = error.body(request_id)["error"]  # a 5xx keeps its public message only
    return {
        "error": shaped["message"],
        "code": shaped["code"],
        "details": [_located(detail) for detail in shaped["details"]],
        "request_id": request_id,
    }


def _located(detail: dict[str, Any]) -> dict[str, Any]:
    path = detail.get("path")
    if "input" in detail or not isinstance(path, list) or len(path) < 3:
        return detail
    if path[0] != "instances" or not isinstance(path[1], int):
        return detail
    names: list[str] = []
    for part in path[2:]:
        if isinstance(part, int):
            break
        names.append(str(part))
    return {**detail, "input": ".".join(names), "row": path[1]}
