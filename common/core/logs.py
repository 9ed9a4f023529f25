"""Structured JSON logging in Cloud Logging's format, one line per event.

Cloud Functions ship stdout lines to Cloud Logging, which reads ``severity``, ``message``
and ``httpRequest`` from a JSON line; the remaining keys land in ``jsonPayload`` where
log-based metrics can count them. Every line carries the request id when there is one.

A request's line holds no personal data: method, path, status, latency, size, request
id, function, principal and labels, but not the caller's address or user agent. Log
entries cannot be edited, so subject erasure could never reach them there; the audit
trail keeps both, sealed, where erasure can drop them (docs/SECURITY.md).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Request

_CONFIGURED = False
_project: str | None = None
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure(level: str = "INFO", project: str | None = None) -> None:
    """Route the ``ipo`` loggers to stdout as JSON; idempotent."""
    global _CONFIGURED, _project
    _project = project
    root = logging.getLogger("ipo")
    root.setLevel(level)
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.propagate = False
    _CONFIGURED = True


_requests = logging.getLogger("ipo.request")


def request_line(
    *,
    function: str,
    request: Request,
    status: int,
    latency_s: float,
    request_id: str,
    subject: str | None,
    labels: dict[str, Any],
) -> None:
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    if not _requests.isEnabledFor(level):
        return
    _requests.log(
        level,
        "%s %s %d",
        request.method,
        request.path,
        status,
        extra={
            "httpRequest": {
                "requestMethod": request.method,
                "requestUrl": request.path,
                "status": status,
                "latency": f"{latency_s:.6f}s",
                "requestSize": str(request.content_length or 0),
            },
            "request_id": request_id,
            "function": function,
            "latency_ms": round(latency_s * 1000, 3),
            "principal": subject,
            "labels": {k: v for k, v in labels.items() if v is not None},
            **trace_fields(request.headers.get("X-Cloud-Trace-Context", "")),
        },
    )


_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?")


def trace_fields(header: str) -> dict[str, Any]:
    """Cloud Logging's trace fields from X-Cloud-Trace-Context (``TRACE_ID/SPAN_ID;o=1``),
    so a request's lines group under its trace; nothing when the header is absent."""
    found = _TRACE.match(header)
    if not found:
        return {}
    trace = f"projects/{_project}/traces/{found[1]}" if _project else found[1]
    fields: dict[str, Any] = {"logging.googleapis.com/trace": trace}
    if found[2]:
        fields["logging.googleapis.com/spanId"] = format(int(found[2]), "016x")
    return fields


_cache = logging.getLogger("ipo.cache")
CACHE_STATS_EVERY_S = 60.0
_next_cache_stats = 0.0


def cache_stats_line(stats: Callable[[], dict[str, Any]], now: float) -> None:
    """The prediction cache's hit ratios, sizes and evictions, at most once a minute."""
    global _next_cache_stats
    if now < _next_cache_stats:
        return
    _next_cache_stats = now + CACHE_STATS_EVERY_S
    _cache.info("prediction cache statistics", extra={"cache_stats": stats()})
