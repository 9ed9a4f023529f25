"""ipoctl run in process against the functions' test clients, routed as the gateway routes."""

from __future__ import annotations

import io
from collections.abc import Mapping
from urllib.parse import urlsplit

from common.api.dispatch import find_route
from common.api.routes import all_routes
from tests.conftest import function_client
from tools.cli import main as cli
from tools.cli.client import RawResponse

URL = "http://gateway.test:8080"


def transport(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
) -> RawResponse:
    """The function whose route matches (openapi.yaml, as the gateway reads it) answers."""
    path = url.removeprefix(URL)
    route, _ = find_route(all_routes(), method, urlsplit(path).path)
    response = function_client(route.function).open(
        path, method=method, headers=dict(headers), data=body
    )
    return RawResponse(response.status_code, response.get_data(), dict(response.headers))


def ipoctl(token: str, *argv: str, stdin: str = "") -> str:
    """What ``ipoctl --token TOKEN ARGV...`` prints; the command must succeed."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(
        ["--url", URL, "--token", token, *argv],
        transport=transport,
        stdin=io.StringIO(stdin),
        stdout=stdout,
        stderr=stderr,
    )
    assert code == 0, stderr.getvalue()
    return stdout.getvalue()
