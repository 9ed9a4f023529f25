"""Request log lines: what operations needs, and none of the caller's personal data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import function_client
from tests.support.fixtures import Stack
from tests.support.log_capture import Lines

CALLER_IP = "203.0.113.77"
CALLER_AGENT = "Erasable-Agent/9.9 (subject 4711)"


@pytest.mark.parametrize("authorised", [True, False])
def test_a_request_line_holds_neither_the_callers_ip_nor_user_agent(
    stack: Stack, log_lines: Lines, authorised: bool
) -> None:
    headers = {"User-Agent": CALLER_AGENT, "X-Forwarded-For": CALLER_IP}
    if authorised:
        headers.update(stack.headers())
    response = function_client("list_models").get(
        "/v1/models", headers=headers, environ_base={"REMOTE_ADDR": CALLER_IP}
    )
    assert response.status_code == (200 if authorised else 401)
    (line,) = [json.loads(t) for t in log_lines.text if '"ipo.request"' in t]
    assert line["httpRequest"]["status"] == response.status_code
    assert line["request_id"] == response.headers["X-Request-Id"]
    assert line["latency_ms"] >= 0
    assert line["principal"] == ("tester" if authorised else None)
    everything = "\n".join(log_lines.text)
    assert CALLER_IP not in everything
    assert "Erasable-Agent" not in everything
