"""The local gateway's gunicorn worker: gunicorn's own refusals in the one error shape, and
keep-alive connections spread evenly over the gateway's processes.

gunicorn refuses some requests before the application sees them: a request line over
``limit_request_line`` (414), more than ``limit_request_fields`` headers or one over
``limit_request_field_size`` (431), anything that is not HTTP/1.1 (400). It answers those
with an HTML page of its own (``Worker.handle_error``). This worker answers them with
``common.api.dispatch.error_response``, so a client parses one JSON shape whatever
refused it, and logs the refusal without the caller's address or any of the request's
bytes (a refused header may be a token). The shape is the route's, as the functions answer:
the Open Inference Protocol's for a ``/v2`` path. gunicorn refuses a request line or a
header before the request has a path, so its parser (``SeenRequest``) keeps the bytes it
read until the request is parsed, and a refusal reads the path from their request line
(a request line too short to tell gets the platform's shape).

With several processes, each listens on a socket of its own (SO_REUSEPORT) and the kernel
gives each new connection to one of them by a hash of its addresses, whatever the load:
eight keep-alive clients land four and four on two processes only 27 % of the time
(70 of 256 ways), six and two 22 %. The process with more then answers each of its
requests later while the other idles, for as long as the clients stay connected. So the
processes share their connection counts (``ConnectionShares``), and one that holds at
least two more than the least-loaded closes a connection after its next answer
(``Connection: close``); the client reconnects, and the kernel hashes the new connection
afresh. One connection is moved at a time across all processes, so a pair never swaps
back and forth, and a process that has stopped recording its count (stopped, or still
loading its models) is left out.
"""

from __future__ import annotations

import mmap
import ssl
import struct
import threading
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http import parser as http_parser
from gunicorn.http.message import Request
from gunicorn.workers.gthread import ThreadWorker

from common.api.dispatch import error_response
from common.api.routes import PLATFORM_ERRORS, error_style
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


ERRORS_OF_REFUSED = "ipo_errors"
"""The attribute ``SeenRequest`` gives an exception raised while parsing: the error shape of
the path the request line names."""


def errors_of_request_line(head: bytes) -> str:
    """The error shape (``x-ipo-errors``) for a request whose first bytes are ``head``: the
    route rule (``error_style``) on the path of its request line; the platform's when the
    bytes end before the path can be told."""
    line = head.removeprefix(b"\r\n").split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2:
        return PLATFORM_ERRORS
    target = parts[1].decode("latin-1")
    whole = len(parts) == 3 or "?" in target or "#" in target
    path = unquote(urlsplit(target).path)  # the absolute form too, decoded as Flask does
    if not whole and path == "/v2":  # cut short: /v2, or /v2x...
        return PLATFORM_ERRORS
    return error_style(path)


class SeenRequest(Request):  # type: ignore[misc]  # untyped upstream
    """gunicorn's request, keeping the bytes it reads until it is parsed: a request refused
    before it has a path (414, 431) then still gets its route's error shape."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._head: bytearray | None = None
        super().__init__(*args, **kwargs)  # parses the request line and headers

    def read_into(self, unreader: Any, buf: bytearray, stop: bool = False) -> None:
        if self._head is None:
            self._head = buf  # the buffer the request line is read into, as it grows
        super().read_into(unreader, buf, stop)

    def parse(self, unreader: Any) -> Any:
        try:
            return super().parse(unreader)
        except Exception as exc:
            setattr(exc, ERRORS_OF_REFUSED, errors_of_request_line(bytes(self._head or b"")))
            raise
        finally:
            self._head = None  # nothing of the request is kept past its parsing


def errors_of(req: Any, exc: BaseException) -> str:
    """The error shape of what gunicorn raised: the parsed path's route's, else the one read
    from the request line (``SeenRequest``), else the platform's."""
    path = getattr(req, "path", None)
    if isinstance(path, str) and path:
        return error_style(unquote(path))
    errors = getattr(exc, ERRORS_OF_REFUSED, PLATFORM_ERRORS)
    return errors if isinstance(errors, str) else PLATFORM_ERRORS


def error_bytes(error: ServiceError, errors: str = PLATFORM_ERRORS) -> bytes:
    """The whole HTTP response for ``error`` in the ``errors`` shape, the connection closed
    after it."""
    response = error_response(error, "", errors)  # nothing was parsed: a new request id
    lines = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + response.get_data()


SHED_EVERY_S = 0.05
"""After a connection is moved, how long every process waits before it considers
another: long enough for the client to reconnect and the counts to change."""
STALE_S = 5.0
"""A count older than this is a process that has stopped (or not yet started) serving:
its slot is left out, so nothing is moved towards it. gunicorn's event loop records one
at least every second."""


class ConnectionShares:
    """The open connections of each of the gateway's processes, when each last recorded
    them, and when a connection was last moved, in anonymous shared memory that ``fork``
    hands to every process."""

    _SLOT = struct.Struct("qd")  # open connections, time.monotonic() of the record
    _MOVED = struct.Struct("d")

    def __init__(self, processes: int) -> None:
        if processes < 2:
            raise ValueError("connections are shared out among two or more processes")
        self._memory = mmap.mmap(-1, self._SLOT.size * processes + self._MOVED.size)
        self._processes = processes
        self._index = 0

    def claim(self, index: int) -> ConnectionShares:
        """This process's slot; called in each process after it is forked."""
        if not 0 <= index < self._processes:
            raise ValueError(f"no slot {index} among {self._processes} processes")
        self._index = index
        return self

    def record(self, connections: int) -> None:
        offset = self._SLOT.size * self._index
        self._SLOT.pack_into(self._memory, offset, connections, time.monotonic())

    def counts(self) -> list[int | None]:
        """Each process's connections; None for one that has not recorded lately."""
        now, found = time.monotonic(), []
        for index in range(self._processes):
            count, at = self._SLOT.unpack_from(self._memory, self._SLOT.size * index)
            found.append(count if at and now - at <= STALE_S else None)
        return found

    def surplus(self, connections: int) -> bool:
        """Whether moving one of this process's ``connections`` evens the load."""
        others = [n for i, n in enumerate(self.counts()) if i != self._index and n is not None]
        return bool(others) and connections >= min(others) + 2

    def claim_move(self) -> bool:
        """Whether a connection may be moved now: one at a time across all processes."""
        offset = self._SLOT.size * self._processes
        now = time.monotonic()
        if now - self._MOVED.unpack_from(self._memory, offset)[0] < SHED_EVERY_S:
            return False
        self._MOVED.pack_into(self._memory, offset, now)
        return True


shares: ConnectionShares | None = None
"""Set by scripts/serve.py in each of several processes before gunicorn starts."""


class GatewayWorker(ThreadWorker):  # type: ignore[misc]  # untyped upstream
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._move_lock = threading.Lock()
        self.connections_moved = 0

    def init_process(self) -> None:
        """In the worker's own process, before it serves: its HTTP/1 parser makes
        ``SeenRequest`` requests (gunicorn builds the parser with no hook for its class)."""
        http_parser.RequestParser.mesg_class = SeenRequest
        super().init_process()

    def notify(self) -> None:
        """gunicorn's heartbeat, on every turn of the event loop: also this process's count."""
        super().notify()
        if shares is not None:
            shares.record(self.nr_conns)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if shares is not None and not req.should_close() and self._should_move(shares):
            req.must_close = True  # "Connection: close" on this answer, then closed
        return super().handle_request(req, conn)

    def _should_move(self, shares: ConnectionShares) -> bool:
        with self._move_lock:
            if not shares.surplus(self.nr_conns) or not shares.claim_move():
                return False
            self.connections_moved += 1
            return True

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
            util.write_nonblock(client, error_bytes(error, errors_of(req, exc)))
        except Exception:  # the client is gone; nothing more to tell it
            self.log.debug("could not send the error response")
