"""The local gateway's gunicorn worker: gunicorn's own refusals in the one error shape.

gunicorn refuses some requests before the application sees them: a request line over
``limit_request_line`` (414), more than ``limit_request_fields`` headers or one over
``limit_request_field_size`` (431), anything that is not HTTP/1.1 (400). It answers those
with an HTML page of its own (``Worker.handle_error``). This worker answers them with
``common.api.dispatch.error_response``, so a client parses one JSON shape whatever
refused it, and logs the refusal without the caller's address or any of the request's
bytes (a refused header may be a token).
"""

from __future__ import annotations

import ssl
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker

from common.api.dispatch import error_response
from common.core.errors import (
    HeaderFieldsTooLargeError,
    MalformedRequestError,
    ServiceError,
    UriTooLongError,
)


class NotImplementedServiceError(ServiceError):
    status = 501
    code = "not_implemented"


class ExpectationFailedError(ServiceError):
    status = 417
    code = "expectation_failed"


_SERVER_FAULTS = (
    http_errors.InvalidResponseHeader,
    http_errors.InvalidResponseHeaderName,
    http_errors.ConfigurationProblem,
)


def refusal(exc: BaseException, cfg: Any) -> ServiceError:
    """The error a client gets for what gunicorn raised while reading or serving it."""
    if isinstance(exc, http_errors.LimitRequestLine):
        return UriTooLongError(f"the request line is longer than {cfg.limit_request_line} bytes")
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return HeaderFieldsTooLargeError(
            f"the request has more than {cfg.limit_request_fields} header fields, or one "
            f"longer than {cfg.limit_request_field_size} bytes"
        )
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        return NotImplementedServiceError("this transfer coding is not supported")
    if isinstance(exc, http_errors.ExpectationFailed):
        return ExpectationFailedError("only 'Expect: 100-continue' is understood")
    if isinstance(exc, _SERVER_FAULTS) or not isinstance(
        exc, (http_errors.ParseException, ssl.SSLError)
    ):
        return ServiceError(f"gunicorn could not serve the request: {type(exc).__name__}")
    return MalformedRequestError(f"the request is not valid HTTP/1.1 ({type(exc).__name__})")


def error_bytes(error: ServiceError) -> bytes:
    """The whole HTTP response for ``error``, the connection closed after it."""
    response = error_response(error, "")  # nothing was parsed: a new request id
    lines = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + response.get_data()


class GatewayWorker(ThreadWorker):  # type: ignore[misc]  # untyped upstream
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        error = refusal(exc, self.cfg)
        if error.status >= 500:
            self.log.exception("request failed before the application: %s", error.message)
        else:
            self.log.warning(
                "request refused before the application: %d %s (%s)",
                error.status,
                error.code,
                type(exc).__name__,
            )
        try:
            util.write_nonblock(client, error_bytes(error))
        except Exception:  # the client is gone; nothing more to tell it
            self.log.debug("could not send the error response")
