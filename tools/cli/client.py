"""The HTTP side of ``ipoctl``: a thin client over ``requests`` and the errors it raises.

The transport is an interface so tests replace it; every call has a timeout, and every
answer that is not the API's own shape becomes an error with an exit code.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests

from tools.cli import output as out

DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "ipoctl/1"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_GATE, EXIT_SERVER = 0, 1, 2, 3, 4
URL_VARIABLE = "IPOCTL_URL"
"""The environment variable ipoctl reads its base URL from (after ``--url``)."""


class CliError(Exception):
    """Anything that ends a command early: printed on stderr, mapped to an exit code."""

    def __init__(self, lines: Sequence[str], exit_code: int) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = list(lines)
        self.exit_code = exit_code


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__([f"error: {message}"], EXIT_USAGE)


class TransportError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__([f"error: {message}"], EXIT_SERVER)


class ApiError(CliError):
    """An answer outside 2xx, or a 2xx that is not a JSON object. ``text`` is the body as received;
    ``shaped`` says it is the API's JSON error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any],
        request_id: str | None,
        text: str,
        *,
        shaped: bool = True,
    ) -> None:
        self.status = status
        self.shaped = shaped
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        self.text = text
        super().__init__(out.error_lines(code, message, details, request_id), _exit_code(self))

    @property
    def gate_failure(self) -> bool:
        """422 whose details report a failed check: the promotion gate or verification."""
        return self.status == 422 and any(_failed_check(d) for d in self.details)


def _failed_check(detail: Any) -> bool:
    """A gate criterion or a verification report (``{"verification": {...}}``) that failed."""
    if not isinstance(detail, dict):
        return False
    report = detail.get("verification")
    nested = report.get("passed") if isinstance(report, dict) else None
    return detail.get("passed") is False or nested is False


def _exit_code(error: ApiError) -> int:
    if error.gate_failure:
        return EXIT_GATE
    return EXIT_REFUSED if 400 <= error.status < 500 else EXIT_SERVER


@dataclass(frozen=True)
class RawResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Transport(Protocol):
    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> RawResponse: ...


READS = frozenset({"GET", "HEAD"})


def _refused(exc: BaseException) -> bool:
    """Whether nothing listens there (the connection was never made), as opposed to a
    connection that was made and then closed."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        if isinstance(seen, ConnectionRefusedError | socket.gaierror) or type(seen).__name__ in (
            "NewConnectionError",
            "NameResolutionError",
        ):
            return True
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        reason = getattr(seen, "reason", None)
        seen = (
            reason
            if isinstance(reason, BaseException)
            else nested or seen.__cause__ or seen.__context__
        )
    return False


class RequestsTransport:
    """The real transport: one keep-alive session, no redirects followed."""

    def __init__(self) -> None:
        self._session = requests.Session()

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> RawResponse:
        for attempt in (1, 2):
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=dict(headers),
                    data=body,
                    timeout=timeout,
                    allow_redirects=False,
                )
                break
            except requests.Timeout:
                raise TransportError(f"no answer from {url} within {timeout:g} s") from None
            except requests.exceptions.SSLError as exc:
                raise TransportError(f"cannot reach {url}: {exc}") from None
            except requests.ConnectionError as exc:
                parts = urlsplit(url)
                where = f"{parts.scheme}://{parts.netloc}"
                if _refused(exc):  # one sentence instead of urllib3's chain of exceptions
                    raise TransportError(
                        f"no gateway at {where}: start it with `make run`, "
                        f"or set {URL_VARIABLE} (or --url) to where it listens"
                    ) from None
                # A kept-alive connection the server closed while idle: a read is sent
                # again on a new one; a write may have been made, so it is not.
                if method in READS and attempt == 1:
                    continue
                raise TransportError(
                    f"the gateway at {where} closed the connection without an answer "
                    f"({method} {parts.path})"
                ) from None
            except requests.RequestException as exc:
                raise TransportError(f"cannot reach {url}: {exc}") from None
        return RawResponse(response.status_code, response.content, dict(response.headers))


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any
    text: str


def _segment(value: str) -> str:
    return quote(value, safe="")


class Client:
    """The API over HTTP: one method per operation, each returning the decoded answer."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: Transport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.transport: Transport = transport or RequestsTransport()

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Answer:
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Authorization": f"Bearer {token or self.token}",
        }
        payload = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        raw = self.transport(
            method, self.base_url + path, headers=headers, body=payload, timeout=self.timeout
        )
        text = raw.body.decode("utf-8", errors="replace")
        try:
            data, parsed = json.loads(text), True
        except ValueError:
            data, parsed = None, False
        if 200 <= raw.status < 300 and parsed and isinstance(data, dict):
            return Answer(raw.status, data, text)
        raise _api_error(raw, data, text)

    def list_models(self) -> Answer:
        return self.call("GET", "/v1/models")

    def get_model(self, model_id: str) -> Answer:
        return self.call("GET", f"/v1/models/{_segment(model_id)}")

    def get_version(self, model_id: str, version: str) -> Answer:
        return self.call("GET", f"/v1/models/{_segment(model_id)}/versions/{_segment(version)}")

    def register(self, model_id: str, body: Mapping[str, Any]) -> Answer:
        return self.call("POST", f"/v1/models/{_segment(model_id)}/versions", body)

    def set_stage(self, model_id: str, version: str, stage: str, reason: str = "") -> Answer:
        path = f"/v1/models/{_segment(model_id)}/versions/{_segment(version)}/stage"
        body = {"stage": stage, **({"reason": reason} if reason else {})}
        return self.call("POST", path, body)

    def promote(
        self,
        model_id: str,
        version: str,
        traffic_percentage: int,
        expected_generation: int | None = None,
        reason: str = "",
    ) -> Answer:
        body: dict[str, Any] = {"version": version, "traffic_percentage": traffic_percentage}
        if expected_generation is not None:
            body["expected_generation"] = expected_generation
        if reason:
            body["reason"] = reason
        return self.call("POST", f"/v1/models/{_segment(model_id)}/promote", body)

    def generation(self, model_id: str) -> int:
        """The generation of the model's serving state now, as ``GET /v1/models/{id}`` says."""
        answer = self.get_model(model_id)
        value = answer.data.get("generation")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(
                answer.status,
                f"http_{answer.status}",
                f"the answer for model {model_id} has no generation",
                [],
                None,
                answer.text,
                shaped=False,
            )
        return value

    def rollback(
        self,
        model_id: str,
        deployment_id: str | None = None,
        expected_generation: int | None = None,
        reason: str = "",
    ) -> Answer:
        body: dict[str, Any] = {}
        if deployment_id is not None:
            body["deployment_id"] = deployment_id
        if reason:
            body["reason"] = reason
        if expected_generation is not None:
            body["expected_generation"] = expected_generation
        try:
            return self.call("POST", f"/v1/models/{_segment(model_id)}/rollback", body)
        except TransportError as exc:
            if expected_generation is not None:  # the same request again rolls back at most once
                again = f"--expected-generation {expected_generation}"
                again += f" --deployment {deployment_id}" if deployment_id is not None else ""
                exc.lines.append(
                    f"hint: the rollback may have been made; repeat it with {again}: "
                    "the same request rolls back at most once"
                )
            raise

    def deployments(self, model_id: str) -> Answer:
        return self.call("GET", f"/v1/models/{_segment(model_id)}/deployments")

    def predict(self, model_id: str, body: Mapping[str, Any], token: str | None = None) -> Answer:
        return self.call("POST", f"/v1/predict/{_segment(model_id)}", body, token=token)


def _api_error(raw: RawResponse, data: Any, text: str) -> ApiError:
    error = data.get("error") if isinstance(data, dict) else None
    header_id = next((v for k, v in raw.headers.items() if k.lower() == "x-request-id"), None)
    if isinstance(error, dict):
        details = error.get("details")
        return ApiError(
            raw.status,
            str(error.get("code") or f"http_{raw.status}"),
            str(error.get("message") or ""),
            details if isinstance(details, list) else [],
            str(data.get("request_id") or header_id or "") or None,
            text,
        )
    what = "is not a JSON object" if 200 <= raw.status < 300 else "is not the API's error shape"
    snippet = out.clip(" ".join(text.split()), 200) or "(empty body)"
    code = f"http_{raw.status}"
    message = f"the answer {what}: {snippet}"
    return ApiError(raw.status, code, message, [], header_id, text, shaped=False)


# --- commands ---------------------------------------------------------------------------
