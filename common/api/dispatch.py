"""The one adapter from a Flask request to a handler and back.

Every function calls ``dispatch(function_name, request)``. In order it: takes or makes a
request id; routes by path and method (404, 405); refuses a body over the limit before
reading it (413); authenticates the bearer token (401); applies the principal's rate
limit (429); checks the operation's permission (403); parses JSON (400); validates the
body against the operation's schema (422); runs the handler; maps any error to the one
error shape; stores the request's one audit entry before answering (503 with Retry-After
and no result when it cannot be stored); merges the instance's statistics when their
minute is up; and writes one structured log line. Nothing is left for a thread to do
after the answer: Cloud Functions gives an instance no CPU between requests.

Authentication comes before parsing on purpose: an anonymous caller gets a 401 without
the service spending time on its body.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Request, Response

from common.api import collector, metrics
from common.api.calls import Call, Reply, Served
from common.api.oip.codec import refuse_binary_body
from common.api.oip.errors import error_body as oip_error_body
from common.api.operations import operation_of
from common.api.routes import OIP_ERRORS, PLATFORM_ERRORS, Route, error_style, routes_of
from common.audit.payload_log import KeptPrediction
from common.audit.trail import AuditEvent, sha256_hex
from common.core import logs
from common.core.errors import (
    MalformedRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
    UnsupportedMediaTypeError,
)
from common.core.validation import validate
from common.registry.records import utcnow
from common.security.auth import Principal
from common.services import Services, get_services

log = logging.getLogger("ipo.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON = "application/json"
PREDICTION_OPERATIONS = ("predict", "explain")
"""Operations whose bodies the audit keeps sealed: predictions and their explanations."""


def request_id_of(request: Request) -> str:
    """The caller's X-Request-Id if it is a plain token, else a new id."""
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _dumps(body: Any) -> bytes:
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:
        # a request's own values, echoed in error details, can be what orjson refuses
        # (integers beyond 64 bits, lone surrogates); the standard encoder writes both
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _json_response(body: Any, status: int, request_id: str, headers: Mapping[str, str]) -> Response:
    payload = _dumps(body)
    response = Response(payload, status=status, mimetype=_JSON)
    response.headers["X-Request-Id"] = request_id
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name] = value
    return response


def error_response(error: ServiceError, request_id: str, errors: str = PLATFORM_ERRORS) -> Response:
    """The error in the route's shape (``x-ipo-errors``): the platform's, or the Open
    Inference Protocol's on its routes."""
    if not _REQUEST_ID.fullmatch(request_id):
        request_id = uuid.uuid4().hex
    body = oip_error_body(error, request_id) if errors == OIP_ERRORS else error.body(request_id)
    return _json_response(body, error.status, request_id, error.headers)


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


def _check_media_type(request: Request, raw: bytes) -> None:
    """A body labelled as something other than JSON is 415: ``curl -d`` without a
    Content-Type sends a form, and reading it as JSON would only work by accident. An
    unlabelled body is read as JSON, as is any ``application/*+json``."""
    label = request.headers.get("Content-Type")
    if label is None or not raw.strip():
        return
    media = label.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaTypeError(
            f"request body is labelled {media or 'with an empty Content-Type'}; send it as "
            "JSON with Content-Type: application/json"
        )


def _parse_json(raw: bytes, *, optional: bool = False) -> Any:
    if not raw.strip():
        if optional:
            return {}
        raise MalformedRequestError("request body is empty; a JSON object is required")
    try:  # UTF-8 only, as the audit reads it
        return _DECODER.decode(raw.decode("utf-8-sig"))
    except _DuplicateKey as exc:
        raise MalformedRequestError(
            f"request body names {exc.key!r} twice in one object; JSON parsers disagree on "
            "which value counts, so neither does"
        ) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise MalformedRequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedRequestError("request body is nested too deeply") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the body; a key given twice is refused rather than the last one kept
    (a proxy or a validator that kept the first would see another request)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return found


_DECODER = json.JSONDecoder(object_pairs_hook=_object)
"""One decoder for every body, built once."""


@dataclass
class _Served:
    """What one request came to, for its audit entry and its log line."""

    function: str
    request_id: str
    started: float
    status: int = 500
    operation: str = "unrouted"
    principal: Principal | None = None
    services: Services | None = None
    raw: bytes = b""
    labels: dict[str, Any] = field(default_factory=dict)
    errors: str = PLATFORM_ERRORS
    served: Served | None = None
    """The prediction the handler answered, for the payload log."""


def _serve(served: _Served, request: Request) -> Response:
    labels = served.labels
    try:
        served.errors = error_style(request.path)
        services = served.services = get_services()
        route, params = find_route(routes_of(served.function), request.method, request.path)
        served.errors = route.errors
        served.operation = labels["operation"] = route.operation_id
        operation = operation_of(route)
        served.raw = _read_body(request, services.settings.max_body_bytes)
        principal = served.principal = services.verifier.authenticate(request.headers)
        if services.rate_limiter is not None:
            services.rate_limiter.check(principal.subject)
        if route.permission:
            principal.require(route.permission.format(**params))
        body = None
        if operation.body is not None:
            if route.errors == OIP_ERRORS:
                refuse_binary_body(request.headers)  # its JSON is only a prefix of the body
            _check_media_type(request, served.raw)
            body = validate(
                operation.body,
                _parse_json(served.raw, optional=operation.body_optional),
                max_details=services.settings.max_error_details,
            )
        call = Call(
            services=services,
            principal=principal,
            params=params,
            query=request.args,
            body=body,
            request_id=served.request_id,
            labels=labels,
        )
        labels.setdefault("model_id", params.get("model_id"))
        result = operation.handler(call)
        reply = result if isinstance(result, Reply) else Reply(result)
        served.status, served.served = reply.status, reply.served
        return _json_response(reply.body, reply.status, served.request_id, reply.headers)
    except ServiceError as exc:
        served.status = exc.status
        labels["error_code"] = exc.code
        if exc.status >= 500:
            log.error(
                "request failed: %s",
                exc.message,
                extra={"request_id": served.request_id, "code": exc.code},
            )
        return error_response(exc, served.request_id, served.errors)
    except Exception:
        served.status = 500
        labels["error_code"] = "internal"
        log.exception("unhandled error", extra={"request_id": served.request_id})
        return error_response(ServiceError("unhandled error"), served.request_id, served.errors)


def _audit(served: _Served, request: Request, response: Response) -> Response:
    """Store the request's one audit entry; an answer whose entry is not stored is not
    sent: it becomes a 503 with Retry-After."""
    services = served.services
    if services is None:
        return response  # misconfigured: nothing to audit with, and already a 503
    body = response.get_data()
    prediction = served.operation.startswith(PREDICTION_OPERATIONS) and served.status < 400
    event = AuditEvent(
        operation=served.operation,
        function=served.function,
        method=request.method,
        path=request.path,
        principal=served.principal.subject if served.principal else None,
        model_id=served.labels.get("model_id"),
        model_version=served.labels.get("model_version"),
        request_id=served.request_id,
        request_sha256=sha256_hex(served.raw),
        response_sha256=sha256_hex(body),
        status=served.status,
        outcome="ok" if served.status < 400 else served.labels.get("error_code", "error"),
        client_ip=request.remote_addr or "",
        user_agent=request.headers.get("User-Agent", "")[:512],
        forwarded_for=request.headers.get("X-Forwarded-For", "")[:512],
        time=utcnow(),
        financial_data=served.raw.decode() if prediction else None,
        proprietary_metrics=body.decode() if prediction else None,
        kept=_kept(services, served) if served.served is not None else None,
    )
    try:
        services.audit.append(event)
    except ServiceError as exc:
        log.error(
            "audit entry not written: %s", exc.message, extra={"request_id": served.request_id}
        )
        served.status = exc.status
        served.labels["error_code"] = exc.code
        return error_response(exc, served.request_id, served.errors)
    return response


def _kept(services: Services, served: _Served) -> KeptPrediction | None:
    """What the payload log keeps of an answered prediction, if its model samples it. Its
    settings come from a cache; when they cannot be read the prediction is not kept and
    the answer stands (the audit commit that follows reaches the same store)."""
    prediction, labels = served.served, served.labels
    if prediction is None or served.status >= 400:
        return None
    model_id = str(prediction.answer.get("model_id") or labels.get("model_id") or "")
    try:
        return services.payload_log.keep(
            model_id=model_id,
            request_id=served.request_id,
            operation=served.operation,
            principal=served.principal.subject if served.principal else None,
            instances=prediction.instances,
            parameters=prediction.parameters,
            answer=prediction.answer,
            kind=prediction.kind,
            latency_ms=(time.perf_counter() - served.started) * 1000,
            cache=labels.get("cache"),
            time_now=utcnow(),
        )
    except ServiceError as exc:
        log.warning(
            "prediction not kept in the payload log: %s",
            exc.message,
            extra={"request_id": served.request_id, "model_id": model_id},
        )
        return None


def dispatch(function: str, request: Request) -> Response:
    """Serve one request for ``function``; never raises, never leaks a traceback."""
    # functions-framework hands over Flask's request proxy; the object behind it is read
    # dozens of times per request, so resolve the proxy once.
    request = getattr(request, "_get_current_object", lambda: request)()
    served = _Served(function, request_id_of(request), time.perf_counter())
    response = _serve(served, request)
    response = _audit(served, request, response)
    if served.services is not None:
        served.services.flush_statistics_if_due()
    latency_s = time.perf_counter() - served.started
    logs.request_line(
        function=function,
        request=request,
        status=served.status,
        latency_s=latency_s,
        request_id=served.request_id,
        subject=served.principal.subject if served.principal else None,
        labels=served.labels,
    )
    if served.services is not None and served.services.cache is not None:
        logs.cache_stats_line(served.services.cache.stats, time.monotonic())
    if metrics.enabled():
        try:  # the answer is made: a metrics fault must not turn it into an error
            metrics.observe_request(
                function=function,
                operation=served.operation,
                status=served.status,
                latency_s=latency_s,
                labels=served.labels,
                cache=served.services.cache if served.services is not None else None,
            )
        except Exception:
            log.exception("metrics not recorded", extra={"request_id": served.request_id})
    collector.freeze_after(response, served.status)
    return response
