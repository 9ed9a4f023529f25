"""ipoctl: requests built, answers rendered, exit codes, with a fake transport (no network)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest

from common.core.config import Settings
from tests.conftest import ROOT
from tests.support.gateway_process import IPOCTL
from tools.cli import client as cli_client
from tools.cli import commands as cli_commands
from tools.cli import main as cli
from tools.cli.client import RawResponse, TransportError
from tools.local import ensure_local_secrets

URL = "http://gateway.test:8080"
ENV = {"IPOCTL_URL": URL, "IPOCTL_TOKEN": "tok-admin"}

SUMMARY = {
    "model_id": "risk",
    "kind": "risk",
    "description": "IPO risk class",
    "production_version": "1.1.0",
    "canary_version": "1.2.0",
    "canary_percentage": 10,
    "generation": 7,
    "updated_at": "2024-05-01T12:34:56.123456Z",
}
VERSION = {
    "model_id": "risk",
    "version": "1.2.0",
    "kind": "risk",
    "stage": "staging",
    "created_at": "2024-05-01T10:00:00.000001Z",
    "created_by": "trainer",
    "metrics": {"accuracy": 0.8712, "latency_p95_ms": 0.41},
    "model_card": {"intended_use": "screening IPO candidates"},
    "artifact_sha256": "ab" * 32,
    "artifact_size": 2048,
    "input_schema": {"properties": {"sector": {}, "revenue_musd": {}}},
    "example": {"sector": "technology", "revenue_musd": 120.0},
    "tags": {"data": "synthetic"},
    "description": "",
}
DETAIL = {
    **SUMMARY,
    "production": {**VERSION, "version": "1.1.0", "stage": "production"},
    "versions": [
        {**VERSION, "version": "1.0.0", "stage": "retired", "metrics": {"accuracy": 0.8}},
        {**VERSION, "version": "1.1.0", "stage": "production"},
        VERSION,
    ],
}
STATE_BEFORE = {
    "production_version": "1.1.0",
    "canary_version": None,
    "canary_percentage": 0,
    "generation": 6,
}
STATE_CANARY = {**STATE_BEFORE, "canary_version": "1.2.0", "canary_percentage": 10, "generation": 7}
STATE_FULL = {**STATE_BEFORE, "production_version": "1.2.0", "generation": 8}
CANARY_DEPLOYMENT = {
    "deployment_id": "dep-7",
    "kind": "promote",
    "status": "succeeded",
    "actor": "local-developer",
    "created_at": "2024-05-02T09:00:00.5Z",
    "from": STATE_BEFORE,
    "to": STATE_CANARY,
    "version": "1.2.0",
    "traffic_percentage": 10,
    "reason": "",
    "gate": [
        {"criterion": "accuracy", "value": 0.87, "threshold": 0.85, "op": ">=", "passed": True}
    ],
    "verification": {
        "passed": True,
        "problems": [],
        "golden_cases": 20,
        "golden_mismatches": [],
        "latency_p95_ms": 0.42,
    },
}
FAILED_VERIFICATION = {
    "error": {
        "code": "invalid_values",
        "message": "risk 1.2.0 failed verification: 2 golden-set output(s) differ",
        "details": [
            {
                "verification": {
                    "passed": False,
                    "problems": ["2 golden-set output(s) differ"],
                    "golden_cases": 20,
                    "golden_mismatches": ["case 3.risk_score: 40.1 != 41.0", "case 9.risk_class"],
                    "latency_p95_ms": 0.5,
                }
            }
        ],
    },
    "request_id": "req-43",
}
GATE_REFUSAL = {
    "error": {
        "code": "invalid_values",
        "message": "risk 1.2.0 does not meet the promotion gate",
        "details": [
            {
                "criterion": "accuracy",
                "value": 0.81,
                "threshold": 0.85,
                "op": ">=",
                "passed": False,
            },
            {
                "criterion": "latency_p95_ms",
                "value": 2.0,
                "threshold": 50,
                "op": "<=",
                "passed": True,
            },
            {"criterion": "experiment", "passed": False, "message": "experiment exp-3 is running"},
        ],
    },
    "request_id": "req-42",
}


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    timeout: float


Reply = tuple[int, Any] | RawResponse | Exception
Router = Callable[[Sent], Reply]


@dataclass
class FakeTransport:
    """Answers from a queue (or a router function) and records every request."""

    replies: list[Reply] = field(default_factory=list)
    router: Router | None = None
    sent: list[Sent] = field(default_factory=list)

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> RawResponse:
        request = Sent(method, url, dict(headers), json.loads(body) if body else None, timeout)
        self.sent.append(request)
        reply = self.router(request) if self.router else self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, RawResponse):
            return reply
        status, data = reply
        return RawResponse(status, json.dumps(data).encode(), {"X-Request-Id": "req-h"})


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(
    *argv: str,
    transport: FakeTransport | None = None,
    env: Mapping[str, str] = ENV,
    stdin: str = "",
    minter: Callable[[], cli_commands.Minter] | None = None,
    real_transport: bool = False,
) -> Result:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(
        list(argv),
        environ=env,
        transport=None if real_transport else transport or FakeTransport(),
        minter=minter,
        stdin=io.StringIO(stdin),
        stdout=stdout,
        stderr=stderr,
    )
    return Result(code, stdout.getvalue(), stderr.getvalue())


def pairs(output: str) -> dict[str, str]:
    """The ``key  value`` lines of a rendered block."""
    found = {}
    for line in output.splitlines():
        key, sep, value = line.strip().partition("  ")
        if sep and key.strip():
            found[key.strip()] = value.strip()
    return found


def column_starts(line: str, header: str, names: list[str]) -> list[int]:
    return [header.index(name) for name in names]


def assert_aligned(table: str, names: list[str]) -> None:
    """Every row has a cell starting where each named column's header starts."""
    header, *rows = table.splitlines()
    for start in column_starts(header, header, names)[1:]:
        for row in rows:
            assert row[start - 2 : start] == "  ", (row, start)
            assert row[start] != " ", (row, start)


# --- each command builds the right request ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "method", "path", "body"),
    [
        (["models"], "GET", "/v1/models", None),
        (["show", "risk"], "GET", "/v1/models/risk", None),
        (["show", "risk", "--version", "1.2.0"], "GET", "/v1/models/risk/versions/1.2.0", None),
        (
            ["stage", "risk", "1.2.0", "staging"],
            "POST",
            "/v1/models/risk/versions/1.2.0/stage",
            {"stage": "staging"},
        ),
        (
            ["promote", "risk", "1.2.0"],
            "POST",
            "/v1/models/risk/promote",
            {"version": "1.2.0", "traffic_percentage": 100},
        ),
        (
            ["promote", "risk", "1.2.0", "--traffic", "10"],
            "POST",
            "/v1/models/risk/promote",
            {"version": "1.2.0", "traffic_percentage": 10},
        ),
        (
            ["promote", "risk", "1.2.0", "--expected-generation", "7"],
            "POST",
            "/v1/models/risk/promote",
            {"version": "1.2.0", "traffic_percentage": 100, "expected_generation": 7},
        ),
        (
            ["rollback", "risk", "--expected-generation", "7"],
            "POST",
            "/v1/models/risk/rollback",
            {"expected_generation": 7},
        ),
        (
            ["rollback", "risk", "--deployment", "dep-7", "--expected-generation", "0"],
            "POST",
            "/v1/models/risk/rollback",
            {"deployment_id": "dep-7", "expected_generation": 0},
        ),
        (
            ["stage", "risk", "1.2.0", "retired", "--reason", "superseded"],
            "POST",
            "/v1/models/risk/versions/1.2.0/stage",
            {"stage": "retired", "reason": "superseded"},
        ),
        (
            ["promote", "risk", "1.2.0", "--reason", "retrained"],
            "POST",
            "/v1/models/risk/promote",
            {"version": "1.2.0", "traffic_percentage": 100, "reason": "retrained"},
        ),
        (
            ["rollback", "risk", "--expected-generation", "7", "--reason", "bad canary"],
            "POST",
            "/v1/models/risk/rollback",
            {"expected_generation": 7, "reason": "bad canary"},
        ),
        (["history", "risk"], "GET", "/v1/models/risk/deployments", None),
    ],
)
def test_each_command_sends_its_request(argv: list[str], method: str, path: str, body: Any) -> None:
    transport = FakeTransport([(200, {})])
    result = run("--json", *argv, transport=transport)
    assert result.code == 0, result.err
    (sent,) = transport.sent
    assert (sent.method, sent.url, sent.body) == (method, URL + path, body)
    assert sent.headers["Authorization"] == "Bearer tok-admin"
    assert sent.headers["Accept"] == "application/json"
    assert ("Content-Type" in sent.headers) == (method == "POST")
    assert sent.timeout == cli_client.DEFAULT_TIMEOUT_S


def test_options_come_from_flags_before_or_after_the_command() -> None:
    transport = FakeTransport([(200, {"models": []}), (200, {"models": []})])
    env = {"IPOCTL_URL": "http://ignored:1", "IPOCTL_TOKEN": "ignored"}
    first = run(
        "--url",
        "http://h:9/",
        "--token",
        "t1",
        "--timeout",
        "5",
        "models",
        env=env,
        transport=transport,
    )
    second = run(
        "models", "--url", "http://h:9", "--token", "t2", "--json", env=env, transport=transport
    )
    assert (first.code, second.code) == (0, 0)
    assert [s.url for s in transport.sent] == ["http://h:9/v1/models"] * 2
    assert [s.headers["Authorization"] for s in transport.sent] == ["Bearer t1", "Bearer t2"]
    assert [s.timeout for s in transport.sent] == [5.0, cli_client.DEFAULT_TIMEOUT_S]
    assert first.out == "no models registered\n"
    assert json.loads(second.out) == {"models": []}


def test_default_url_is_the_local_gateway() -> None:
    transport = FakeTransport([(200, {"models": []})])
    assert run("models", env={"IPOCTL_TOKEN": "t"}, transport=transport).code == 0
    assert transport.sent[0].url == "http://127.0.0.1:8080/v1/models"


def test_path_segments_are_quoted() -> None:
    transport = FakeTransport([(404, {"error": {"code": "not_found", "message": "no"}})])
    run("show", "a/b", "--version", "1.0.0?x", transport=transport)
    assert transport.sent[0].url == URL + "/v1/models/a%2Fb/versions/1.0.0%3Fx"


def test_json_prints_the_raw_answer_exactly() -> None:
    raw = b'{"models": [{"model_id": "risk",   "generation": 7}],\n "extra": 1.50}\n'
    result = run("--json", "models", transport=FakeTransport([RawResponse(200, raw)]))
    assert result.code == 0
    assert result.out == raw.decode()


# --- tables -------------------------------------------------------------------------------


def test_models_table_is_aligned() -> None:
    other = {**SUMMARY, "model_id": "ensemble", "kind": "ensemble", "canary_version": None}
    result = run("models", transport=FakeTransport([(200, {"models": [SUMMARY, other]})]))
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == [
        "MODEL",
        "KIND",
        "PRODUCTION",
        "CANARY",
        "TRAFFIC",
        "GENERATION",
        "UPDATED",
    ]
    assert lines[1].split() == [
        "risk",
        "risk",
        "1.1.0",
        "1.2.0",
        "10%",
        "7",
        "2024-05-01",
        "12:34:56Z",
    ]
    assert lines[2].split()[:5] == ["ensemble", "ensemble", "1.1.0", "-", "-"]
    assert_aligned(result.out, ["MODEL", "KIND", "PRODUCTION", "CANARY", "TRAFFIC", "UPDATED"])
    assert "\x1b" not in result.out


def test_show_model_lists_versions_and_serving_roles() -> None:
    result = run("show", "risk", transport=FakeTransport([(200, DETAIL)]))
    assert result.code == 0
    assert pairs(result.out)["canary"] == "1.2.0 at 10%"
    table = result.out.split("\n\n")[1]
    rows = {line.split()[0]: line for line in table.splitlines()}
    assert rows["1.1.0"].split()[:3] == ["1.1.0", "production", "production"]
    assert rows["1.2.0"].split()[:4] == ["1.2.0", "staging", "canary", "10%"]
    assert "accuracy=0.8712 latency_p95_ms=0.41" in rows["1.2.0"]
    assert_aligned(table, ["VERSION", "STAGE", "SERVING", "CREATED", "BY", "METRICS"])


def test_show_version_renders_the_record() -> None:
    result = run("show", "risk", "--version", "1.2.0", transport=FakeTransport([(200, VERSION)]))
    assert result.code == 0
    found = pairs(result.out)
    assert found["sha256"] == "ab" * 32
    assert found["input fields"] == "revenue_musd, sector"
    assert found["created"] == "2024-05-01 10:00:00Z by trainer"
    assert found["accuracy"] == "0.8712"
    assert found["intended_use"] == "screening IPO candidates"


def test_show_retired_version_is_refused() -> None:
    gone = {
        "error": {"code": "gone", "message": "risk 1.0.0 is retired", "details": []},
        "request_id": "r1",
    }
    result = run("show", "risk", "--version", "1.0.0", transport=FakeTransport([(410, gone)]))
    assert result.code == cli_client.EXIT_REFUSED
    assert result.err == "error: gone: risk 1.0.0 is retired\nrequest id: r1\n"
    assert result.out == ""


def test_promote_to_a_canary_renders_before_and_after() -> None:
    answer = {"deployment": CANARY_DEPLOYMENT, "model": SUMMARY}
    result = run(
        "promote", "risk", "1.2.0", "--traffic", "10", transport=FakeTransport([(200, answer)])
    )
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "risk 1.2.0 is a canary at 10%"
    found = pairs(result.out)
    assert found["before"] == "1.1.0"
    assert found["after"] == "1.1.0 + canary 1.2.0 at 10%"
    assert found["gate"] == "PASS accuracy 0.87 (required >= 0.85)"
    assert found["verification"] == "PASS verification: 20 golden cases; latency p95 0.42 ms"
    assert found["by"] == "local-developer at 2024-05-02 09:00:00Z"


def test_promote_to_production_and_rollback() -> None:
    full = {
        **CANARY_DEPLOYMENT,
        "deployment_id": "dep-8",
        "traffic_percentage": 100,
        "from": STATE_CANARY,
        "to": STATE_FULL,
    }
    back = {
        **full,
        "deployment_id": "dep-9",
        "kind": "rollback",
        "from": STATE_FULL,
        "to": {**STATE_BEFORE, "generation": 9},
        "reason": "rollback of dep-8",
    }
    transport = FakeTransport(
        [
            (200, {"deployment": full}),
            (200, {**DETAIL, "generation": 8}),
            (200, {"deployment": back}),
        ]
    )
    promoted = run("promote", "risk", "1.2.0", transport=transport)
    rolled = run("rollback", "risk", transport=transport)
    assert promoted.out.splitlines()[0] == "risk 1.2.0 is in production"
    assert pairs(promoted.out)["after"] == "1.2.0"
    assert rolled.out.splitlines()[0] == "rolled back risk: now serving 1.1.0"
    assert pairs(rolled.out)["reason"] == "rollback of dep-8"
    assert transport.sent[-1].body == {"expected_generation": 8}


ROLLBACK = {
    **CANARY_DEPLOYMENT,
    "deployment_id": "dep-9",
    "kind": "rollback",
    "version": None,
    "traffic_percentage": None,
    "from": STATE_CANARY,
    "to": {**STATE_BEFORE, "generation": 8},
    "gate": [],
    "verification": {},
    "restores": "dep-7",
}


@pytest.mark.parametrize(
    ("options", "body"),
    [
        ([], {"expected_generation": 7}),
        (["--deployment", "dep-7"], {"deployment_id": "dep-7", "expected_generation": 7}),
    ],
)
def test_rollback_sends_the_generation_it_read_first(
    options: list[str], body: dict[str, Any]
) -> None:
    transport = FakeTransport([(200, DETAIL), (200, {"deployment": ROLLBACK, "model": SUMMARY})])
    result = run("rollback", "risk", *options, transport=transport)
    assert result.code == 0, result.err
    read, rolled = transport.sent
    assert (read.method, read.url) == ("GET", URL + "/v1/models/risk")
    assert (rolled.method, rolled.url, rolled.body) == (
        "POST",
        URL + "/v1/models/risk/rollback",
        body,
    )
    assert result.out.splitlines()[0] == "rolled back risk: now serving 1.1.0"
    assert pairs(result.out)["restores"] == "dep-7"


def test_rollback_refused_by_its_precondition_exits_1() -> None:
    stale = {
        "error": {
            "code": "precondition_failed",
            "message": "risk is at generation 8, not 7",
            "details": [],
        },
        "request_id": "r9",
    }
    transport = FakeTransport([(409, stale)])
    result = run("rollback", "risk", "--expected-generation", "7", transport=transport)
    assert result.code == cli_client.EXIT_REFUSED
    assert result.err.splitlines()[0] == (
        "error: precondition_failed: risk is at generation 8, not 7"
    )
    assert result.out == ""


def test_rollback_without_an_answer_says_how_to_repeat_it() -> None:
    lost = TransportError("no answer from http://gateway.test:8080/v1/models/risk/rollback")
    transport = FakeTransport([(200, DETAIL), lost])
    result = run("rollback", "risk", "--deployment", "dep-7", transport=transport)
    assert result.code == cli_client.EXIT_SERVER
    assert result.err.splitlines()[-1] == (
        "hint: the rollback may have been made; repeat it with --expected-generation 7 "
        "--deployment dep-7: the same request rolls back at most once"
    )


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ((404, {"error": {"code": "not_found", "message": "no model risk", "details": []}}), 1),
        ((200, {**DETAIL, "generation": None}), 4),
        ((200, {**DETAIL, "generation": True}), 4),
    ],
)
def test_rollback_without_a_generation_to_send_sends_nothing(reply: Reply, code: int) -> None:
    transport = FakeTransport([reply])
    result = run("rollback", "risk", transport=transport)
    assert result.code == code
    assert [s.method for s in transport.sent] == ["GET"]


def test_history_table() -> None:
    failed = {
        **CANARY_DEPLOYMENT,
        "deployment_id": "dep-6",
        "status": "failed",
        "to": STATE_BEFORE,
        "reason": "golden set: 3 of 20 outputs differ",
    }
    answer = {"deployments": [CANARY_DEPLOYMENT, failed]}
    result = run("history", "risk", transport=FakeTransport([(200, answer)]))
    assert result.code == 0
    header, first, second = result.out.splitlines()
    assert header.split() == [
        "CREATED",
        "DEPLOYMENT",
        "KIND",
        "STATUS",
        "ACTOR",
        "VERSION",
        "TRAFFIC",
        "FROM",
        "TO",
        "REASON",
    ]
    assert first.startswith("2024-05-02 09:00:00Z  dep-7")
    assert "1.1.0 + canary 1.2.0 at 10%" in first
    assert "failed" in second
    assert second.endswith("golden set: 3 of 20 outputs differ")
    assert_aligned(result.out, ["DEPLOYMENT", "KIND", "STATUS", "ACTOR", "VERSION", "FROM"])
    empty = run("history", "risk", transport=FakeTransport([(200, {"deployments": []})]))
    assert empty.out == "no deployments\n"


def test_stage_confirms() -> None:
    result = run(
        "stage",
        "risk",
        "1.2.0",
        "retired",
        transport=FakeTransport([(200, {**VERSION, "stage": "retired"})]),
    )
    assert result.out == "risk 1.2.0 is now retired\n"


# --- register -----------------------------------------------------------------------------


def test_register_encodes_the_artifact_and_merges_the_metadata(tmp_path: Path) -> None:
    artifact = tmp_path / "model.joblib"
    artifact.write_bytes(b"\x00\x01binary\xff")
    metadata = tmp_path / "meta.json"
    metadata.write_text(
        json.dumps(
            {
                "metrics": {"accuracy": 0.9},
                "description": "v2",
                "golden_set": [{"input": {}, "output": {}}],
            }
        )
    )
    transport = FakeTransport([(201, {**VERSION, "stage": "development"})])
    result = run(
        "register",
        "risk",
        "--version",
        "1.2.0",
        "--kind",
        "risk",
        "--artifact",
        str(artifact),
        "--metadata",
        str(metadata),
        transport=transport,
    )
    assert result.code == 0, result.err
    sent = transport.sent[0]
    assert (sent.method, sent.url) == ("POST", URL + "/v1/models/risk/versions")
    assert sent.body == {
        "version": "1.2.0",
        "kind": "risk",
        "artifact_base64": base64.b64encode(b"\x00\x01binary\xff").decode(),
        "description": "v2",
        "metrics": {"accuracy": 0.9},
        "tags": {},
        "model_card": {},
        "golden_set": [{"input": {}, "output": {}}],
        "drift_baseline": {},
        "example": {},
    }
    assert result.out.startswith("registered risk 1.2.0 (kind risk, stage development, sha256 ")


def test_register_metadata_from_stdin(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x")
    transport = FakeTransport([(201, VERSION)])
    result = run(
        "register",
        "risk",
        "--version",
        "1.2.0",
        "--kind",
        "risk",
        "--artifact",
        str(tmp_path / "a.bin"),
        "--metadata",
        "-",
        stdin='{"tags": {"a": "b"}}',
        transport=transport,
    )
    assert result.code == 0
    assert transport.sent[0].body["tags"] == {"a": "b"}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ('{"version": "9.9.9"}', "unknown keys ['version']"),
        ('{"metrics": [1]}', "'metrics' must be an object"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_register_refuses_bad_metadata_locally(tmp_path: Path, metadata: str, message: str) -> None:
    (tmp_path / "a.bin").write_bytes(b"x")
    (tmp_path / "m.json").write_text(metadata)
    transport = FakeTransport()
    result = run(
        "register",
        "risk",
        "--version",
        "1.2.0",
        "--kind",
        "risk",
        "--artifact",
        str(tmp_path / "a.bin"),
        "--metadata",
        str(tmp_path / "m.json"),
        transport=transport,
    )
    assert result.code == cli_client.EXIT_USAGE
    assert message in result.err
    assert transport.sent == []


def test_register_missing_artifact_and_existing_version(tmp_path: Path) -> None:
    missing = run(
        "register",
        "risk",
        "--version",
        "1.2.0",
        "--kind",
        "risk",
        "--artifact",
        str(tmp_path / "nope"),
    )
    assert missing.code == cli_client.EXIT_USAGE
    assert missing.err.startswith("error: cannot read artifact ")
    (tmp_path / "a.bin").write_bytes(b"x")
    conflict = {
        "error": {"code": "conflict", "message": "risk 1.2.0 already exists", "details": []},
        "request_id": "r9",
    }
    result = run(
        "register",
        "risk",
        "--version",
        "1.2.0",
        "--kind",
        "risk",
        "--artifact",
        str(tmp_path / "a.bin"),
        transport=FakeTransport([(409, conflict)]),
    )
    assert result.code == cli_client.EXIT_REFUSED
    assert result.err.splitlines()[0] == "error: conflict: risk 1.2.0 already exists"


# --- errors and exit codes ----------------------------------------------------------------


def test_gate_refusal_lists_every_criterion_and_exits_3() -> None:
    result = run("promote", "risk", "1.2.0", transport=FakeTransport([(422, GATE_REFUSAL)]))
    assert result.code == cli_client.EXIT_GATE == 3
    assert result.out == ""
    assert result.err.splitlines() == [
        "error: invalid_values: risk 1.2.0 does not meet the promotion gate",
        "  FAIL accuracy 0.81 (required >= 0.85)",
        "  PASS latency_p95_ms 2 (required <= 50)",
        "  FAIL experiment: experiment exp-3 is running",
        "request id: req-42",
    ]


def test_failed_verification_lists_the_mismatches_and_exits_3() -> None:
    transport = FakeTransport([(422, FAILED_VERIFICATION)])
    result = run("promote", "risk", "1.2.0", "--traffic", "10", transport=transport)
    assert result.code == cli_client.EXIT_GATE
    assert result.err.splitlines() == [
        "error: invalid_values: risk 1.2.0 failed verification: 2 golden-set output(s) differ",
        "  FAIL verification: 2 golden-set output(s) differ; 20 golden cases; latency p95 0.5 ms",
        "    case 3.risk_score: 40.1 != 41.0",
        "    case 9.risk_class",
        "request id: req-43",
    ]


def test_json_error_prints_the_raw_error_on_stdout_and_the_lines_on_stderr() -> None:
    raw = json.dumps(GATE_REFUSAL, indent=1)
    transport = FakeTransport([RawResponse(422, raw.encode())])
    result = run("promote", "risk", "1.2.0", "--json", transport=transport)
    assert result.code == cli_client.EXIT_GATE
    assert result.out == raw + "\n"
    assert result.err.startswith("error: invalid_values: ")


def test_field_validation_is_a_plain_refusal() -> None:
    invalid = {
        "error": {
            "code": "invalid_values",
            "message": "1 invalid value",
            "details": [
                {
                    "field": "instances[0].revenue_musd",
                    "path": ["instances", 0, "revenue_musd"],
                    "rule": "greater_than_equal",
                    "message": "Input should be >= 0",
                    "value": -1.0,
                }
            ],
        },
        "request_id": "r2",
    }
    result = run(
        "predict",
        "risk",
        "--instances",
        "-",
        stdin="[{}]",
        transport=FakeTransport([(422, invalid)]),
    )
    assert result.code == cli_client.EXIT_REFUSED
    assert result.err.splitlines()[1] == (
        "  instances[0].revenue_musd: Input should be >= 0 [greater_than_equal] value=-1"
    )


@pytest.mark.parametrize(
    ("reply", "code", "first_line"),
    [
        (
            (
                401,
                {
                    "error": {"code": "unauthenticated", "message": "token expired", "details": []},
                    "request_id": "r",
                },
            ),
            1,
            "error: unauthenticated: token expired",
        ),
        (
            (403, {"error": {"code": "forbidden", "message": "no", "details": []}}),
            1,
            "error: forbidden: no",
        ),
        (
            (409, {"error": {"code": "conflict", "message": "generation changed", "details": []}}),
            1,
            "error: conflict: generation changed",
        ),
        (
            (503, {"error": {"code": "unavailable", "message": "store down", "details": []}}),
            4,
            "error: unavailable: store down",
        ),
        (
            RawResponse(502, b"<html>Bad Gateway</html>"),
            4,
            "error: http_502: the answer is not the API's error shape: <html>Bad Gateway</html>",
        ),
        (RawResponse(200, b"OK"), 4, "error: http_200: the answer is not a JSON object: OK"),
        (RawResponse(200, b"[1]"), 4, "error: http_200: the answer is not a JSON object: [1]"),
        (
            TransportError("cannot reach http://gateway.test:8080/v1/models: refused"),
            4,
            "error: cannot reach http://gateway.test:8080/v1/models: refused",
        ),
    ],
)
def test_exit_codes(reply: Reply, code: int, first_line: str) -> None:
    result = run("models", transport=FakeTransport([reply]))
    assert result.code == code
    assert result.err.splitlines()[0] == first_line
    assert result.out == ""


def test_request_id_falls_back_to_the_header() -> None:
    result = run(
        "models", transport=FakeTransport([(404, {"error": {"code": "not_found", "message": "x"}})])
    )
    assert result.err.splitlines()[-1] == "request id: req-h"


def test_no_token_is_a_usage_error_before_any_request() -> None:
    transport = FakeTransport()
    result = run("models", env={}, transport=transport)
    assert result.code == cli_client.EXIT_USAGE
    assert "IPOCTL_TOKEN=$(make -s token)" in result.err
    assert transport.sent == []


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["promote", "risk", "1.2.0", "--traffic", "0"],
        ["promote", "risk", "1.2.0", "--traffic", "101"],
        ["rollback", "risk", "--expected-generation", "-1"],
        ["rollback", "risk", "--expected-generation", "two"],
        ["stage", "risk", "1.2.0", "production"],
        ["canary-check", "risk"],
        ["models", "--timeout", "-1"],
        ["--url", "gateway:8080", "models"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    transport = FakeTransport()
    assert run(*argv, transport=transport).code == cli_client.EXIT_USAGE
    assert transport.sent == []


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--help").code == 0
    assert "exit codes: 0 success" in capsys.readouterr().out


# --- predict ------------------------------------------------------------------------------

PREDICTION = {
    "predictions": [{"risk_class": "low", "risk_score": 21.5, "probabilities": {"low": 0.7}}],
    "model_id": "risk",
    "model_version": "1.2.0",
    "variant": "canary",
    "experiment_id": "exp-3",
    "request_id": "req-5",
}


@pytest.mark.parametrize(
    ("given", "body"),
    [
        ('[{"sector": "technology"}]', {"instances": [{"sector": "technology"}]}),
        ('{"sector": "technology"}', {"instances": [{"sector": "technology"}]}),
        (
            '{"instances": [{"a": 1}], "parameters": {"p": 2}}',
            {"instances": [{"a": 1}], "parameters": {"p": 2}},
        ),
    ],
)
def test_predict_body_forms(given: str, body: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(given)
    transport = FakeTransport([(200, PREDICTION)])
    result = run("predict", "risk", "--instances", str(path), transport=transport)
    assert result.code == 0
    assert (transport.sent[0].url, transport.sent[0].body) == (URL + "/v1/predict/risk", body)


def test_predict_prints_version_variant_and_predictions() -> None:
    result = run(
        "predict",
        "risk",
        "--instances",
        "-",
        stdin="[{}]",
        transport=FakeTransport([(200, PREDICTION)]),
    )
    assert result.code == 0
    head, table = result.out.split("\n\n")
    found = pairs(head)
    assert (found["version"], found["variant"], found["experiment"]) == ("1.2.0", "canary", "exp-3")
    assert table.splitlines() == [
        "#  RISK_CLASS  RISK_SCORE  PROBABILITIES",
        '0  low               21.5  {"low":0.7}',
    ]


def test_predict_unreadable_instances() -> None:
    result = run("predict", "risk", "--instances", "-", stdin="nope")
    assert result.code == cli_client.EXIT_USAGE
    assert "is not valid JSON" in result.err
    assert run("predict", "risk", "--instances", "-", stdin="3").code == cli_client.EXIT_USAGE


# --- canary-check -------------------------------------------------------------------------


def canary_router(request: Sent) -> Reply:
    if request.method == "GET":
        return 200, DETAIL
    user = int(request.headers["Authorization"].removeprefix("Bearer tok-user-"))
    canary = user % 10 == 0
    return 200, {
        **PREDICTION,
        "model_version": "1.2.0" if canary else "1.1.0",
        "variant": "canary" if canary else "production",
    }


def fake_minter(minted: list[str]) -> Callable[[], cli_commands.Minter]:
    def mint(subject: str) -> str:
        minted.append(subject)
        return "tok-" + subject

    return lambda: mint


def test_canary_check_counts_users_per_version() -> None:
    minted: list[str] = []
    transport = FakeTransport(router=canary_router)
    result = run(
        "canary-check", "risk", "--users", "50", transport=transport, minter=fake_minter(minted)
    )
    assert result.code == 0, result.err
    assert minted == [f"user-{i}" for i in range(1, 51)]
    get, *predictions = transport.sent
    assert (get.url, get.headers["Authorization"]) == (URL + "/v1/models/risk", "Bearer tok-admin")
    assert len(predictions) == 50
    assert all(p.body == {"instances": [VERSION["example"]]} for p in predictions)
    lines = result.out.splitlines()
    assert (
        lines[0] == "risk: serving 1.1.0 + canary 1.2.0 at 10%; 50 simulated users, one call each"
    )
    assert lines[2:5] == [
        "VERSION  VARIANT     USERS  SHARE",
        "1.1.0    production     45  90.0%",
        "1.2.0    canary          5  10.0%",
    ]
    assert lines[-1] == "canary share: 10.0% observed, 10% configured"


def test_canary_check_json_summary() -> None:
    transport = FakeTransport(router=canary_router)
    result = run(
        "canary-check",
        "risk",
        "--users",
        "10",
        "--json",
        transport=transport,
        minter=fake_minter([]),
    )
    assert json.loads(result.out) == {
        "model_id": "risk",
        "users": 10,
        "production_version": "1.1.0",
        "canary_version": "1.2.0",
        "canary_percentage": 10,
        "results": [
            {"model_version": "1.1.0", "variant": "production", "users": 9},
            {"model_version": "1.2.0", "variant": "canary", "users": 1},
        ],
    }


def test_canary_check_refusals() -> None:
    no_production = FakeTransport([(200, {**DETAIL, "production": None})])
    result = run(
        "canary-check", "risk", "--users", "3", transport=no_production, minter=fake_minter([])
    )
    assert (result.code, result.err) == (1, "error: risk has no production version to compare\n")
    unauthenticated = {
        "error": {"code": "unauthenticated", "message": "bad signature", "details": []}
    }
    foreign = FakeTransport([(200, DETAIL), (401, unauthenticated)])
    result = run("canary-check", "risk", "--users", "3", transport=foreign, minter=fake_minter([]))
    assert result.code == cli_client.EXIT_REFUSED
    assert "hint: the gateway refused a locally minted token" in result.err


def test_local_minter_signs_with_the_local_secret(tmp_path: Path) -> None:
    environ = {"IPO_ENV_FILE": str(tmp_path / "local.env"), "IPO_DATA_DIR": str(tmp_path)}
    ensure_local_secrets(Settings.from_environ(environ))
    token = cli_commands.local_minter(environ)("user-3")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "user-3"
    assert claims["perms"] == ["model:*:predict"]
    assert claims["exp"] - claims["iat"] == cli_commands.CANARY_TOKEN_TTL_S


def test_local_minter_without_a_secret_is_a_usage_error(tmp_path: Path) -> None:
    environ = {"IPO_ENV_FILE": str(tmp_path / "absent.env"), "IPO_DATA_DIR": str(tmp_path)}
    with pytest.raises(cli_client.UsageError) as caught:
        cli_commands.local_minter(environ)("user-1")
    assert "canary-check cannot mint local tokens" in caught.value.lines[0]
    with pytest.raises(cli_client.UsageError):
        cli_commands.local_minter({"IPO_NO_SUCH_SETTING": "1"})


# --- the real transport and the script ----------------------------------------------------


def test_requests_transport_reports_a_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(
        "models", "--url", f"http://127.0.0.1:{port}", "--timeout", "2", real_transport=True
    )
    assert result.code == cli_client.EXIT_SERVER
    assert result.err == (
        f"error: no gateway at http://127.0.0.1:{port}: start it with `make run`, "
        "or set IPOCTL_URL (or --url) to where it listens\n"
    )


def _closing_server(closes: int) -> tuple[int, threading.Thread, list[bytes]]:
    """An HTTP server on 127.0.0.1 that closes its first ``closes`` connections after
    reading a request, without answering (a keep-alive connection closed while idle looks
    the same to a client), and answers the next one with an empty model list."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(10)  # a connection that never comes ends the thread
    seen: list[bytes] = []

    def serve() -> None:
        with server, contextlib.suppress(TimeoutError):
            for i in range(closes + 1):
                connection, _ = server.accept()
                with connection:
                    seen.append(connection.recv(65536))
                    if i < closes:
                        continue
                    body = b'{"models": []}'
                    connection.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                        + body
                    )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], thread, seen


def test_a_read_whose_connection_is_closed_unanswered_is_sent_once_more() -> None:
    port, thread, seen = _closing_server(closes=1)
    result = run(
        "models", "--url", f"http://127.0.0.1:{port}", "--timeout", "5", real_transport=True
    )
    thread.join(10)
    assert result.code == 0, result.err
    assert len(seen) == 2


def test_a_write_whose_connection_is_closed_is_not_sent_again_nor_called_no_gateway() -> None:
    port, _, seen = _closing_server(closes=1)
    result = run(
        "stage",
        "risk",
        "1.0.0",
        "staging",
        "--url",
        f"http://127.0.0.1:{port}",
        "--timeout",
        "5",
        real_transport=True,
    )
    assert result.code == cli_client.EXIT_SERVER
    assert result.err.startswith(
        f"error: the gateway at http://127.0.0.1:{port} closed the connection without an answer"
    )
    assert len(seen) == 1


def test_script_entry_point() -> None:
    done = subprocess.run(
        [str(IPOCTL), "promote", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "--traffic PCT" in done.stdout


def test_table_aligns_numbers_right_and_empty_columns_left() -> None:
    from tools.cli import output as cli_output

    rendered = cli_output.table(("NAME", "N", "NONE"), [("a", 5, None), ("bbb", 120, None)])
    assert rendered.splitlines() == ["NAME    N  NONE", "a       5  -", "bbb   120  -"]


def test_register_passes_reports_and_a_gate_through_only_when_given(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    gate = {"criteria": [{"metric": "mape", "op": "<=", "threshold": 0.2}]}
    (tmp_path / "m.json").write_text(json.dumps({"gate": gate, "reports": {"fairness": {}}}))
    transport = FakeTransport([(201, VERSION), (201, VERSION)])
    common = ["register", "cca", "--version", "1.0.0", "--kind", "cca"]
    run(
        *common,
        "--artifact",
        str(tmp_path / "a.json"),
        "--metadata",
        str(tmp_path / "m.json"),
        transport=transport,
    )
    run(*common, "--artifact", str(tmp_path / "a.json"), transport=transport)
    with_gate, without = (sent.body for sent in transport.sent)
    assert (with_gate["gate"], with_gate["reports"]) == (gate, {"fairness": {}})
    assert "gate" not in without
    assert "reports" not in without


# --- experiments --------------------------------------------------------------------------

DESIGN = {
    "model_id": "sentiment",
    "variants": {"control": "1.0.0", "candidate": "1.1.0"},
    "split": {"control": 0.5, "candidate": 0.5},
    "metrics": [{"name": "label_correct", "type": "binary", "direction": "increase"}],
}
EXPERIMENT = {  # GET /v1/experiments/{id} as common/api/handlers/experiments.py answers it
    **DESIGN,
    "metrics": [
        {"name": "label_correct", "type": "binary", "direction": "increase", "unit": "user"}
    ],
    "experiment_id": "exp-1",
    "start": "2026-12-01T00:00:00Z",
    "end": "2026-12-31T00:00:00Z",
    "status": "active",
    "created_by": "analyst",
    "created_at": "2026-12-01T00:00:00.25Z",
    "conclusions": {},
    "outcome_window_days": 28,
    "stopped_at": None,
    "closes_at": "2027-01-28T00:00:00Z",
}


def arm(count: int, mean: float, low: float, high: float, users: int) -> dict[str, Any]:
    return {
        "count": count,
        "mean": mean,
        "std": 0.5,
        "users": users,
        "ci": {"low": low, "high": high},
        "ci_method": "delta",
    }


COMPARISON = {  # one comparison of GET .../results, users as the unit
    "metric_type": "binary",
    "unit": "user",
    "direction": "increase",
    "alpha": 0.05,
    "min_n": 100,
    "enough_data": True,
    "control": arm(912, 0.544, 0.49968, 0.58761, 489),
    "variant": arm(950, 0.89041, 0.86043, 0.91462, 511),
    "test": "delta_z",
    "difference": 0.34641,
    "ci": {"low": 0.29012, "high": 0.40269},
    "p_value": 2.7e-34,
    "lift": {"estimate": 0.63686, "low": 0.5, "high": 0.77},
    "always_valid_ci": {"low": 0.2, "high": 0.5},
    "verdict": "better",
    "regression": False,
    "ci_holm": {"low": 0.29012, "high": 0.40269},  # one comparison: Holm's level is 1 - alpha
    "ci_holm_level": 0.95,
    "p_value_adjusted": 5.49e-34,
}
SRM = {
    "p_value": 0.4871,
    "mismatch": False,
    "threshold": 0.001,
    "observed": {"candidate": 511, "control": 489},
    "expected": {"candidate": 500.0, "control": 500.0},
    "unit": "user",
    "requests": {"control": 912, "candidate": 950},
}
RESULTS = {
    "experiment": EXPERIMENT,
    "results": {
        "control": "control",
        "alpha": 0.05,
        "srm": SRM,
        "comparisons": {"candidate": {"label_correct": COMPARISON}},
    },
}


@pytest.mark.parametrize(
    ("argv", "method", "path", "body"),
    [
        (["experiment", "create", "--design", "-"], "POST", "/v1/experiments", DESIGN),
        (["experiment", "show", "exp-1"], "GET", "/v1/experiments/exp-1", None),
        (["experiment", "stop", "exp-1"], "POST", "/v1/experiments/exp-1/stop", {}),
        (["experiment", "assign", "exp-1"], "POST", "/v1/experiments/exp-1/assign", {}),
        (
            ["experiment", "assign", "a/b", "--user", "u-7"],
            "POST",
            "/v1/experiments/a%2Fb/assign",
            {"user_id": "u-7"},
        ),
        (
            ["experiment", "outcome", "exp-1", "--exposure-id", "r1", "--values", "-"],
            "POST",
            "/v1/experiments/exp-1/outcomes",
            {"exposure_id": "r1", "values": {"label_correct": True}},
        ),
        (
            [
                *("experiment", "outcome", "exp-1", "--exposure-id", "r1"),
                *("--value", "label_correct=false", "--value", "err=0.25", "--value", "n=3"),
            ],
            "POST",
            "/v1/experiments/exp-1/outcomes",
            {"exposure_id": "r1", "values": {"label_correct": False, "err": 0.25, "n": 3}},
        ),
        (["experiment", "results", "exp-1"], "GET", "/v1/experiments/exp-1/results", None),
    ],
)
def test_each_experiment_command_sends_its_request(
    argv: list[str], method: str, path: str, body: Any
) -> None:
    transport = FakeTransport([(200, {})])
    stdin = json.dumps(DESIGN) if "create" in argv else '{"label_correct": true}'
    result = run("--json", *argv, transport=transport, stdin=stdin)
    assert result.code == 0, result.err
    (sent,) = transport.sent
    assert (sent.method, sent.url, sent.body) == (method, URL + path, body)
    assert ("Content-Type" in sent.headers) == (method == "POST")


def test_experiment_results_show_users_outcomes_unit_and_the_holm_interval() -> None:
    transport = FakeTransport([(200, RESULTS)])
    result = run("experiment", "results", "exp-1", transport=transport)
    assert result.code == 0, result.err
    head, arms, comparisons, srm = result.out.rstrip("\n").split("\n\n")
    assert head == (
        "experiment exp-1 on sentiment (active, outcomes taken until 2027-01-28 00:00:00Z)"
    )
    assert arms.splitlines() == [
        "METRIC         UNIT  VARIANT    USERS  OUTCOMES  MEAN    95% CI",
        "label_correct  user  control      489       912  0.5440  [0.4997, 0.5876]",
        "label_correct  user  candidate    511       950  0.8904  [0.8604, 0.9146]",
    ]
    assert comparisons.splitlines() == [
        "METRIC         VARIANT    DIFFERENCE  CI_HOLM           LEVEL  LIFT     P (HOLM)  VERDICT",
        "label_correct  candidate  +0.3464     [0.2901, 0.4027]  95%    +63.69%  5.5e-34   better",
    ]
    assert srm.splitlines() == [
        "sample-ratio check on users: p = 0.487 (consistent with the design)",
        "  users: control 489, candidate 511; requests: control 912, candidate 950",
    ]


def test_experiment_results_per_request_metric_and_a_mean_of_zero() -> None:
    """A per-request metric has no user counts; -0.0000 and -0.00% print without a sign."""
    per_request = {
        **COMPARISON,
        "metric_type": "continuous",
        "unit": "request",
        "direction": "decrease",
        "control": {"count": 7, "mean": 1e-9, "ci": {"low": -0.00001, "high": 0.1}},
        "variant": {"count": 5, "mean": -1e-9, "ci": {"low": -0.1, "high": 0.00001}},
        "difference": -2e-9,
        "lift": {"estimate": -0.00001},
        "ci_holm": {"low": -0.2, "high": 0.2},
        "ci_holm_level": 0.95,
        "p_value_adjusted": 1.0,
        "verdict": "not enough data",
    }
    results = {
        **RESULTS["results"],
        "comparisons": {"candidate": {"label_correct": COMPARISON, "error": per_request}},
    }
    answer = {"experiment": EXPERIMENT, "results": results}
    result = run("experiment", "results", "exp-1", transport=FakeTransport([(200, answer)]))
    _, arms, comparisons, _ = result.out.rstrip("\n").split("\n\n")
    rows = [line.split("  ") for line in arms.splitlines()]
    assert [[cell.strip() for cell in row if cell.strip()] for row in rows[3:]] == [
        ["error", "request", "control", "-", "7", "0.0000", "[0.0000, 0.1000]"],
        ["error", "request", "candidate", "-", "5", "0.0000", "[-0.1000, 0.0000]"],
    ]
    assert "-0.0000" not in result.out
    assert [c.strip() for c in comparisons.splitlines()[2].split("  ") if c.strip()] == [
        *("error", "candidate", "0.0000", "[-0.2000, 0.2000]", "95%", "0.00%", "1"),
        "not enough data",
    ]


def test_experiment_results_flags_a_sample_ratio_mismatch_and_missing_data() -> None:
    empty = {"control": {"count": 0, "mean": None, "ci": None}, "variant": {"count": 0}}
    missing = {"difference": None, "ci_holm": None, "ci_holm_level": None, "lift": None}
    comparisons = {"candidate": {"m": {**COMPARISON, **empty, **missing, "verdict": "x"}}}
    srm = {"p_value": 0.0002, "mismatch": True, "threshold": 0.001}
    answer = {"experiment": EXPERIMENT, "results": {"srm": srm, "comparisons": comparisons}}
    result = run("experiment", "results", "exp-1", transport=FakeTransport([(200, answer)]))
    lines = result.out.splitlines()
    assert lines[2].split() == ["METRIC", "UNIT", "VARIANT", "USERS", "OUTCOMES", "MEAN", "CI"]
    assert lines[3].split() == ["m", "user", "control", "-", "0", "-", "-"]
    assert lines[4].split() == ["m", "user", "candidate", "-", "0", "-", "-"]
    assert lines[7].split() == ["m", "candidate", "-", "-", "-", "-", "5.5e-34", "x"]
    assert lines[-1] == (
        "sample-ratio check: p = 0.0002 (MISMATCH: below 0.001, every number is suspect)"
    )


def test_experiment_results_json_is_the_raw_answer() -> None:
    raw = json.dumps(RESULTS, indent=1).encode()
    result = run(
        "experiment", "results", "exp-1", "--json", transport=FakeTransport([RawResponse(200, raw)])
    )
    assert (result.code, result.out) == (0, raw.decode() + "\n")


@pytest.mark.parametrize("action", ["create", "show", "stop"])
def test_experiment_block_shows_units_window_and_stop(action: str) -> None:
    stopped = {
        **EXPERIMENT,
        "status": "stopped",
        "stopped_at": "2026-12-10T08:00:00.5Z",
        "closes_at": "2027-01-07T08:00:00.5Z",
        "conclusions": {"candidate": "inconclusive"},
    }
    argv = ["--design", "-"] if action == "create" else ["exp-1"]
    answer = (201, EXPERIMENT) if action == "create" else (200, stopped)
    result = run("experiment", action, *argv, transport=FakeTransport([answer]), stdin="{}")
    found = pairs(result.out)
    assert found["metrics"] == "label_correct (binary, increase, unit user)"
    assert found["outcome window"] == "28 days"
    if action == "create":
        assert (found["status"], found["stopped"]) == ("active", "-")
        assert found["closes"] == "2027-01-28 00:00:00Z"
    else:
        assert (found["status"], found["stopped"]) == ("stopped", "2026-12-10 08:00:00Z")
        assert found["closes"] == "2027-01-07 08:00:00Z"
        assert found["conclusions"] == "candidate=inconclusive"
    assert found["variants"] == "candidate 1.1.0 (50%), control 1.0.0 (50%)"


def test_experiment_assign_and_outcome_render() -> None:
    assignment = {
        "experiment_id": "exp-1",
        "user_id": "u-7",
        "variant": "candidate",
        "model_id": "sentiment",
        "model_version": "1.1.0",
        "active": False,
    }
    result = run("experiment", "assign", "exp-1", transport=FakeTransport([(200, assignment)]))
    assert result.out == (
        "user u-7 is in variant candidate (sentiment 1.1.0) of experiment exp-1"
        " (experiment no longer active)\n"
    )
    recorded = {"exposure_id": "r1", "variant": "control", "values": {"label_correct": True}}
    result = run(
        "experiment",
        "outcome",
        "exp-1",
        "--exposure-id",
        "r1",
        "--value",
        "label_correct=true",
        transport=FakeTransport([(200, recorded)]),
    )
    assert result.out == "recorded outcome of r1 (variant control): label_correct=true\n"


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (409, "conflict", "request 'r1' already has a different outcome"),
        (404, "not_found", "experiment exp-9 not found"),
    ],
)
def test_experiment_refusals_exit_1(status: int, code: str, message: str) -> None:
    reply = {"error": {"code": code, "message": message, "details": []}, "request_id": "q"}
    argv = ["experiment", "outcome", "exp-9", "--exposure-id", "r1", "--value", "m=1"]
    result = run(*argv, transport=FakeTransport([(status, reply)]))
    assert result.code == cli_client.EXIT_REFUSED
    assert result.err.splitlines() == [f"error: {code}: {message}", "request id: q"]
    result = run("experiment", "show", "exp-9", transport=FakeTransport([(503, reply)]))
    assert result.code == cli_client.EXIT_SERVER


@pytest.mark.parametrize(
    ("argv", "stdin"),
    [
        (["experiment"], ""),
        (["experiment", "show"], ""),
        (["experiment", "create"], ""),
        (["experiment", "create", "--design", "-"], "[1]"),
        (["experiment", "create", "--design", "-"], "nope"),
        (["experiment", "outcome", "exp-1", "--value", "m=1"], ""),
        (["experiment", "outcome", "exp-1", "--exposure-id", "r1"], ""),
        (["experiment", "outcome", "exp-1", "--exposure-id", "r1", "--value", "m"], ""),
        (["experiment", "outcome", "exp-1", "--exposure-id", "r1", "--value", "m=x"], ""),
        (["experiment", "outcome", "exp-1", "--exposure-id", "r1", "--value", "m=nan"], ""),
        (["experiment", "outcome", "exp-1", "--exposure-id", "r1", "--values", "-"], "[]"),
    ],
)
def test_experiment_usage_errors_exit_2(
    argv: list[str], stdin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = FakeTransport()
    assert run(*argv, transport=transport, stdin=stdin).code == cli_client.EXIT_USAGE
    assert transport.sent == []
