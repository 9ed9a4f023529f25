"""The batch routes through the functions as Cloud Functions serves them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from tests.batch.conftest import companies, put_input
from tests.conftest import function_client
from tests.support.fixtures import Stack, embedded_stack, register_risk, serving

SUBMIT = ("batch:submit", "model:risk:predict")


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The submitting call does the work of a small job itself (the default budget)."""
    stack = embedded_stack(tmp_path_factory.mktemp("batch-api"), IPO_BATCH_SHARD_ROWS="4")
    register_risk(stack.lifecycle)
    try:
        yield stack
    finally:
        stack.services.close()


@pytest.fixture
def client(api_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlaskClient]:
    with serving(api_stack, monkeypatch.setenv):
        yield function_client("batch_jobs")


def _body(name: str, **extra: object) -> dict[str, object]:
    return {
        "model": "risk",
        "stage": "production",
        "input_uri": f"batch/{name}/in.jsonl",
        "output_prefix": f"batch/{name}/out/",
        "key_field": "ticker",
        **extra,
    }


def test_a_small_job_is_done_by_the_call_that_submits_it(
    api_stack: Stack, client: FlaskClient
) -> None:
    put_input(api_stack.services.backends.artifacts, "batch/small/in.jsonl", companies(10))
    created = client.post("/v1/batch-jobs", json=_body("small"), headers=api_stack.headers(SUBMIT))
    assert created.status_code == 201, created.json
    job = created.json
    assert created.headers["Location"] == f"/v1/batch-jobs/{job['job_id']}"
    assert (job["state"], job["rows_done"], job["predicted"], job["shards_total"]) == (
        "succeeded",
        10,
        10,
        3,
    )
    assert "plan" not in job
    read = client.get(f"/v1/batch-jobs/{job['job_id']}", headers=api_stack.headers(SUBMIT))
    assert read.status_code == 200
    assert read.json["output_uri"].endswith("/batch/small/out/")
    again = client.post(f"/v1/batch-jobs/{job['job_id']}/cancel", headers=api_stack.headers(SUBMIT))
    assert again.status_code == 409
    assert again.json["error"]["code"] == "conflict"


def test_another_principal_is_told_the_job_does_not_exist(
    api_stack: Stack, client: FlaskClient
) -> None:
    put_input(api_stack.services.backends.artifacts, "batch/mine/in.jsonl", companies(1))
    created = client.post("/v1/batch-jobs", json=_body("mine"), headers=api_stack.headers(SUBMIT))
    path = f"/v1/batch-jobs/{created.json['job_id']}"
    other = api_stack.headers(SUBMIT, subject="someone-else")
    assert client.get(path, headers=other).status_code == 404
    assert client.post(f"{path}/cancel", headers=other).status_code == 404
    assert client.get(path, headers=api_stack.headers(("admin",))).status_code == 200


@pytest.mark.parametrize(
    ("permissions", "status"),
    [(("model:risk:predict",), 403), (("batch:submit", "model:dcf:predict"), 403)],
)
def test_submitting_needs_both_permissions(
    api_stack: Stack, client: FlaskClient, permissions: tuple[str, ...], status: int
) -> None:
    answer = client.post(
        "/v1/batch-jobs", json=_body("perm"), headers=api_stack.headers(permissions)
    )
    assert answer.status_code == status
    assert answer.json["error"]["code"] == "forbidden"


def test_a_location_outside_batch_is_a_422_naming_the_field(
    api_stack: Stack, client: FlaskClient
) -> None:
    body = _body("x", input_uri="models/risk/")
    answer = client.post("/v1/batch-jobs", json=body, headers=api_stack.headers(SUBMIT))
    assert answer.status_code == 422
    (detail,) = answer.json["error"]["details"]
    assert (detail["field"], detail["rule"]) == ("input_uri", "batch_prefix")
    both = _body("x", version="1.0.0")
    answer = client.post("/v1/batch-jobs", json=both, headers=api_stack.headers(SUBMIT))
    assert answer.status_code == 422


def test_the_scheduled_run_finishes_what_the_submitting_call_left(
    api_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_input(api_stack.services.backends.artifacts, "batch/later/in.jsonl", companies(8))
    settings = api_stack.settings.model_copy(update={"batch_submit_budget_s": 0.0})
    no_budget = replace(api_stack, services=replace(api_stack.services, settings=settings))
    with serving(no_budget, monkeypatch.setenv):
        created = function_client("batch_jobs").post(
            "/v1/batch-jobs", json=_body("later"), headers=api_stack.headers(SUBMIT)
        )
        assert created.json["state"] == "running"
        assert created.json["rows_done"] == 0
        refused = function_client("run_batch_jobs").post(
            "/v1/jobs/batch-jobs", json={}, headers=api_stack.headers(SUBMIT)
        )
        assert refused.status_code == 403
        ran = function_client("run_batch_jobs").post(
            "/v1/jobs/batch-jobs",
            json={"time_budget_s": 60},
            headers=api_stack.headers(("job:batch-jobs:run",)),
        )
        assert ran.status_code == 200
        assert ran.json["committed"][created.json["job_id"]] == {"shards": 2, "rows": 8}
        job = function_client("batch_jobs").get(
            f"/v1/batch-jobs/{created.json['job_id']}", headers=api_stack.headers(SUBMIT)
        )
        assert (job.json["state"], job.json["rows_done"]) == ("succeeded", 8)
