"""Ended batch jobs deleted by the retention job, and a submitter's name by erasure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.backends.base import Filter, rfc3339
from common.batch.jobs import BatchJobs
from common.batch.runner import Runner
from common.batch.spec import JOBS, OUTPUTS, SHARDS
from common.security.auth import Principal
from tests.batch.conftest import SUBMITTER, companies, put_input, submit
from tests.conftest import function_client
from tests.support.fixtures import Stack, serving


@pytest.fixture
def served(batch_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with serving(batch_stack, monkeypatch.setenv):
        yield batch_stack


def _job(stack: Stack, name: str, principal: Principal = SUBMITTER) -> str:
    put_input(stack.services.backends.artifacts, f"batch/{name}/in.jsonl", companies(8))
    job = submit(
        stack,
        principal,
        input_uri=f"batch/{name}/in.jsonl",
        output_prefix=f"batch/{name}/out/",
        key_field="ticker",
    )
    return str(job["job_id"])


def _shards(stack: Stack, job_id: str) -> int:
    return len(stack.services.backends.documents.query(SHARDS, [Filter("job_id", "==", job_id)]))


def _purge(stack: Stack) -> dict[str, Any]:
    response = function_client("purge_retention").post(
        "/v1/jobs/purge-retention", json={}, headers=stack.headers()
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    return result


def test_jobs_that_ended_before_the_retention_period_are_deleted_with_their_shards(
    served: Stack,
) -> None:
    documents = served.services.backends.documents
    old, recent, running = _job(served, "old"), _job(served, "recent"), _job(served, "running")
    for job_id in (old, recent):
        Runner(served.services).work(job_id, budget_s=60)
        assert BatchJobs(served.services).get(job_id, SUBMITTER)["state"] == "succeeded"
    assert _shards(served, old) == 2
    long_ago = datetime.now(UTC) - timedelta(days=served.services.settings.retention_days + 1)
    documents.update(JOBS, old, {"finished_at": rfc3339(long_ago)})

    first = _purge(served)
    assert (first["status"], first["batch_jobs_deleted"]) == ("done", 1)
    assert documents.get(JOBS, old) is None
    assert _shards(served, old) == 0
    assert documents.get(JOBS, recent) is not None  # ended within the period
    assert documents.get(JOBS, running) is not None  # not ended: never deleted
    assert _shards(served, recent) == 2
    claimed = {doc.data["job_id"] for doc in documents.query(OUTPUTS)}
    assert old in claimed  # its output prefix stays claimed: no other job writes there
    assert _purge(served)["batch_jobs_deleted"] == 0  # idempotent


def _gdpr(stack: Stack) -> dict[str, Any]:
    """GDPR_001 as the scheduled scan answers it: the finding on batch jobs."""
    response = function_client("compliance_scan").post(
        "/v1/jobs/compliance-scan", json={"rules": ["GDPR_001"]}, headers=stack.headers()
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    (rule,) = response.get_json()["results"]
    (jobs,) = [d for d in rule["details"] if d["collection"] == JOBS]
    return {"passed": rule["passed"], **jobs}


def test_the_compliance_scan_fails_on_an_ended_job_kept_past_retention(served: Stack) -> None:
    documents = served.services.backends.documents
    old, erased = _job(served, "old-kept"), _job(served, "old-erased")
    for job_id in (old, erased):
        Runner(served.services).work(job_id, budget_s=60)
    assert _gdpr(served)["count"] == 0
    long_ago = datetime.now(UTC) - timedelta(days=served.services.settings.retention_days + 1)
    documents.update(JOBS, old, {"finished_at": rfc3339(long_ago)})
    documents.update(JOBS, erased, {"finished_at": rfc3339(long_ago), "submitted_by": "(erased)"})

    found = _gdpr(served)
    assert (found["passed"], found["count"]) == (False, 1)
    assert [(o["id"], o["personal_fields"]) for o in found["oldest"]] == [(old, ["submitted_by"])]
    assert SUBMITTER.subject not in str(found)  # named by id and field, never by value
    _purge(served)
    after = _gdpr(served)
    assert (after["passed"], after["count"], after["oldest"]) == (True, 0, [])


def test_erasure_removes_the_submitter_and_the_canceller_from_their_jobs(served: Stack) -> None:
    leaver = Principal("leaver", SUBMITTER.permissions)
    someone = Principal("someone-else", SUBMITTER.permissions)
    mine, cancelled, theirs = (
        _job(served, "mine", leaver),
        _job(served, "cancel-me", leaver),
        _job(served, "theirs", someone),
    )
    BatchJobs(served.services).cancel(cancelled, leaver)

    response = function_client("purge_retention").post(
        "/v1/privacy/erasure", json={"subject": "leaver"}, headers=served.headers()
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["batch_jobs_redacted"] == 2

    documents = served.services.backends.documents
    for job_id in (mine, cancelled):
        job = documents.get(JOBS, job_id)
        assert job is not None
        assert "leaver" not in (job.data["submitted_by"], job.data["reason"])
        assert job.data["submitted_by"] == "(erased)"
    job = documents.get(JOBS, cancelled)
    assert job is not None
    assert job.data["reason"] == "cancelled by (erased)"
    other = documents.get(JOBS, theirs)
    assert other is not None
    assert other.data["submitted_by"] == "someone-else"
    Runner(served.services).work(mine, budget_s=60)  # the job still runs to its end
    done = documents.get(JOBS, mine)
    assert done is not None
    assert done.data["state"] == "succeeded"
