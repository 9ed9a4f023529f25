"""The one adapter from a Flask request to a handler and back.

Every function calls ``dispatch(function_name, request)``. In order it: takes or makes a
request id; routes by path and method (404, 405); refuses a body over the limit before
reading it (413); authenticates the bearer token (401); checks the operation's permission
(403); parses JSON (400); validates the body against the operation's schema (422); runs
the handler; maps any error to the one error shape; and writes one structured log line.

Authentication comes before parsing on purpose: an anonymous caller gets a 401 without
the service spending time on its body.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Request, Response
from pydantic import TypeAdapter

from common import logs
from common.auth import Principal
from common.errors import (
    MalformedRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
)
from common.routes import Route, routes_of
from common.services import Services, get_services
from common.validation import validate

log = logging.getLogger("ipo.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON = "application/json"


@dataclass
class Call:
    """What a handler gets: validated input and its collaborators, nothing HTTP-shaped."""

    services: Services
    principal: Principal
    params: dict[str, str]
    query: Mapping[str, str]
    body: Any
    request_id: str
    labels: dict[str, Any] = field(default_factory=dict)
    """Added to the request's log line (model id, version, batch size...)."""


@dataclass(frozen=True)
class Reply:
    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    body: TypeAdapter[Any] | None = None


def request_id_of(request: Request) -> str:
    """The caller's X-Request-Id if it is a plain token, else a new id."""
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _json_response(body: Any, status: int, request_id: str, headers: Mapping[str, str]) -> Response:
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    response = Response(payload, status=status, mimetype=_JSON)
    response.headers["X-Request-Id"] = request_id
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name] = value
    return response


def error_response(error: ServiceError, request_id: str) -> Response:
    if not _REQUEST_ID.fullmatch(request_id):
        request_id = uuid.uuid4().hex
    return _json_response(error.body(request_id), error.status, request_id, error.headers)


def find_route(routes: Iterable[Route], method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The operation for a method and path; HEAD is served as GET without a body."""
    path = path.rstrip("/") or "/"
    wanted = "GET" if method == "HEAD" else method
    allowed = set()
    for route in routes:
        params = route.match(path)
        if params is None:
            continue
        if route.method == wanted:
            return route, params
        allowed.add(route.method)
    if allowed:
        if "GET" in allowed:
            allowed.add("HEAD")
        raise MethodNotAllowedError(
            f"{method} is not allowed on {path}",
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    raise NotFoundError(f"no operation at {method} {path}")


def _too_large(request: Request, message: str) -> PayloadTooLargeError:
    # functions-framework reads the whole body after the handler returns (get_data) so
    # the connection can be reused; an empty cache stops that, and the connection closes.
    request._cached_data = b""
    return PayloadTooLargeError(message, headers={"Connection": "close"})


def _read_body(request: Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(request, f"request body of {length} bytes exceeds {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(request, f"request body exceeds {limit} bytes")
    return data


def _parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise MalformedRequestError("request body is empty; a JSON object is required")
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise MalformedRequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedRequestError("request body is nested too deeply") from None


def dispatch(function: str, request: Request) -> Response:
    """Serve one request for ``function``; never raises, never leaks a traceback."""
    from common.api import OPERATIONS  # handlers import serving code; keep start-up lean

    started = time.perf_counter()
    request_id = request_id_of(request)
    status, labels, principal = 500, {}, None
    try:
        services = get_services()
        route, params = find_route(routes_of(function), request.method, request.path)
        labels["operation"] = route.operation_id
        operation = OPERATIONS[route.operation_id]
        raw = _read_body(request, services.settings.max_body_bytes)
        principal = services.verifier.authenticate(request.headers.get("Authorization"))
        if route.permission:
            principal.require(route.permission.format(**params))
        body = None
        if operation.body is not None:
            body = validate(
                operation.body,
                _parse_json(raw),
                max_details=services.settings.max_error_details,
            )
        call = Call(
            services=services,
            principal=principal,
            params=params,
            query=request.args,
            body=body,
            request_id=request_id,
            labels=labels,
        )
        result = operation.handler(call)
        reply = result if isinstance(result, Reply) else Reply(result)
        status = reply.status
        return _json_response(reply.body, reply.status, request_id, reply.headers)
    except ServiceError as exc:
        status = exc.status
        labels["error_code"] = exc.code
        if exc.status >= 500:
            log.error(
                "request failed: %s",
                exc.message,
                extra={"request_id": request_id, "code": exc.code},
            )
        return error_response(exc, request_id)
    except Exception:
        status = 500
        labels["error_code"] = "internal"
        log.exception("unhandled error", extra={"request_id": request_id})
        return error_response(ServiceError("unhandled error"), request_id)
    finally:
        logs.request_line(
            function=function,
            request=request,
            status=status,
            latency_s=time.perf_counter() - started,
            request_id=request_id,
            subject=principal.subject if principal else None,
            labels=labels,
        )
