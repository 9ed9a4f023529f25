"""ipoctl batch against the real batch functions, in process (routed by openapi.yaml)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from common.batch.runner import Runner
from common.services import use_services
from tests.batch.conftest import companies, put_input
from tests.support.cli import URL, ipoctl, transport
from tests.support.fixtures import Stack
from tools.cli import batch
from tools.cli import main as cli

SUBMIT = ("batch:submit", "model:risk:predict")


def test_submit_wait_prints_the_finished_job(stack: Stack) -> None:
    put_input(stack.services.backends.artifacts, "batch/cli/in.jsonl", companies(6))
    printed = ipoctl(
        stack.token(SUBMIT),
        "batch", "submit", "risk", "--stage", "production",
        "--input", "batch/cli/in.jsonl", "--output", "batch/cli/out/",
        "--key-field", "ticker", "--wait",
    )  # fmt: skip
    assert "risk 1.0.0  succeeded" in printed
    assert "rows      6 / 6 done, 6 predicted, 0 refused (0.00%; limit 0.00%)" in printed
    assert "/batch/cli/out/" in printed


def test_wait_follows_the_workers_and_exits_1_when_the_job_fails(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = companies(12)
    rows[9] = {**rows[9], "revenue_musd": "a lot"}
    put_input(stack.services.backends.artifacts, "batch/slow/in.jsonl", rows)
    settings = stack.settings.model_copy(
        update={"batch_submit_budget_s": 0.0, "batch_shard_rows": 4}
    )
    use_services(replace(stack.services, settings=settings), close_previous=False)
    token = stack.token(SUBMIT)
    submitted = json.loads(
        ipoctl(
            token,
            "--json",
            "batch",
            "submit",
            "risk",
            "--version",
            "1.0.0",
            "--input",
            "batch/slow/in.jsonl",
            "--output",
            "batch/slow/out/",
            "--key-field",
            "ticker",
        )
    )
    assert (submitted["state"], submitted["rows_done"]) == ("running", 0)
    polls: list[float] = []

    def one_worker_run(seconds: float) -> None:  # the scheduled run between two polls
        polls.append(seconds)
        Runner(stack.services).work(submitted["job_id"], budget_s=60)

    monkeypatch.setattr(batch, "sleep", one_worker_run)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(
        ["--url", URL, "--token", token, "batch", "wait", submitted["job_id"], "--interval", "0"],
        transport=transport,
        stdout=stdout,
        stderr=stderr,
    )
    assert (code, polls) == (1, [0.0])
    shown = stdout.getvalue()
    assert "risk 1.0.0  failed" in shown
    assert "first errors:\n  batch/slow/in.jsonl:10 [T00009]  invalid_values:" in shown
    status = ipoctl(token, "batch", "status", submitted["job_id"])
    assert "shards    3 / 3" in status


def test_wait_says_when_no_worker_moves_the_job_and_cancel_ends_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_input(stack.services.backends.artifacts, "batch/idle/in.jsonl", companies(8))
    settings = stack.settings.model_copy(
        update={"batch_submit_budget_s": 0.0, "batch_shard_rows": 4}
    )
    use_services(replace(stack.services, settings=settings), close_previous=False)
    token = stack.token(SUBMIT)
    submitted = json.loads(
        ipoctl(
            token, "--json", "batch", "submit", "risk", "--version", "1.0.0",
            "--input", "batch/idle/in.jsonl", "--output", "batch/idle/out/",
        )
    )  # fmt: skip
    job_id = submitted["job_id"]
    polls: list[float] = []

    def nobody_works(seconds: float) -> None:  # no scheduled run: after a minute, cancel
        polls.append(seconds)
        if len(polls) == 4:
            ipoctl(token, "batch", "cancel", job_id)

    monkeypatch.setattr(batch, "sleep", nobody_works)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(
        ["--url", URL, "--token", token, "batch", "wait", job_id, "--interval", "20"],
        transport=transport,
        stdout=stdout,
        stderr=stderr,
    )
    assert code == 1
    assert stderr.getvalue().count("no row done for 60 s") == 1
    assert "cancelled" in stdout.getvalue()
