"""A batch job end to end on the embedded stack: outputs, bad lines, missing inputs,
cancel, the version served and the locations a job may use."""

from __future__ import annotations

import pytest

from common.batch.jobs import BatchJobs
from common.batch.runner import Runner
from common.core.errors import ConflictError, ForbiddenError, InvalidValuesError, NotFoundError
from common.security.auth import Principal
from tests.batch.conftest import SUBMITTER, companies, put_input, read_outputs, submit
from tests.support.fixtures import Stack, register_risk

pytestmark = pytest.mark.usefixtures("batch_stack")


def test_a_job_predicts_every_row_of_every_file_once(batch_stack: Stack) -> None:
    artifacts = batch_stack.services.backends.artifacts
    put_input(artifacts, "batch/all/in/a.jsonl", companies(6))
    put_input(artifacts, "batch/all/in/b.jsonl", companies(3, start=6))
    put_input(artifacts, "batch/all/in/skip.json", companies(2, start=100))
    job = submit(
        batch_stack,
        input_uri="batch/all/in/*.jsonl",
        output_prefix="batch/all/out/",
        key_field="ticker",
    )
    assert (job["state"], job["rows_total"], job["shards_total"]) == ("running", 9, 3)
    assert job["version"] == "1.0.0"
    assert job["requested"] == {
        "version": None,
        "stage": "production",
    }

    Runner(batch_stack.services).work(job["job_id"], budget_s=60)

    done = BatchJobs(batch_stack.services).get(job["job_id"], SUBMITTER)
    assert done["state"] == "succeeded"
    assert (done["rows_done"], done["predicted"], done["errors"]) == (9, 9, 0)
    assert done["estimated_seconds_left"] == 0
    assert done["rows_per_s"] > 0
    lines = read_outputs(artifacts, "batch/all/out/", "predictions")
    assert sorted(line["key"] for line in lines) == [f"T{i:05d}" for i in range(9)]
    first = next(line for line in lines if line["key"] == "T00006")
    assert (first["source"], first["line"]) == ("batch/all/in/b.jsonl", 1)
    assert first["prediction"]["risk_class"] in {"low", "medium", "high"}
    assert read_outputs(artifacts, "batch/all/out/", "errors") == []
    assert [i.key for i in artifacts.list("batch/all/out/")] == [
        f"batch/all/out/{what}-{n:05d}.jsonl"
        for what in ("errors", "predictions")
        for n in range(3)
    ]


def test_bad_lines_are_set_aside_with_their_errors(batch_stack: Stack) -> None:
    artifacts = batch_stack.services.backends.artifacts
    good = companies(5)
    data = (
        b"".join(__import__("json").dumps(r).encode() + b"\n" for r in good[:2])
        + b"{not json\n"
        + b"\n"
        + b"[1, 2]\n"
        + __import__("json").dumps({**good[2], "revenue_musd": -5}).encode()
        + b"\n"
        + b"".join(__import__("json").dumps(r).encode() + b"\n" for r in good[3:])
    )
    artifacts.put("batch/bad/in.jsonl", data)
    job = submit(
        batch_stack,
        input_uri="batch/bad/in.jsonl",
        output_prefix="batch/bad/out/",
        key_field="ticker",
        max_error_rate=0.5,
    )
    Runner(batch_stack.services).work(job["job_id"], budget_s=60)

    done = BatchJobs(batch_stack.services).get(job["job_id"], SUBMITTER)
    assert (done["state"], done["rows_total"], done["predicted"], done["errors"]) == (
        "succeeded",
        7,
        4,
        3,
    )
    errors = read_outputs(artifacts, "batch/bad/out/", "errors")
    assert [(e["line"], e["key"], e["error"]["code"]) for e in errors] == [
        (3, None, "malformed_request"),
        (5, None, "invalid_values"),
        (6, "T00002", "invalid_values"),
    ]
    assert errors[2]["error"]["details"][0]["field"] == "revenue_musd"
    assert set(errors[2]["error"]) == {"code", "message", "details"}
    predicted = read_outputs(artifacts, "batch/bad/out/", "predictions")
    assert [(p["line"], p["key"]) for p in predicted] == [
        (1, "T00000"),
        (2, "T00001"),
        (7, "T00003"),
        (8, "T00004"),
    ]


@pytest.mark.parametrize(("bad", "state"), [(57, "succeeded"), (58, "failed")])
def test_a_job_exactly_at_its_error_rate_succeeds(batch_stack: Stack, bad: int, state: str) -> None:
    """57 of 100 rows refused is within max_error_rate 0.57, though 0.57 x 100 is
    56.99999999999999 in floating point; 58 is not."""
    rows = companies(100)
    for i in range(bad):
        rows[i] = {**rows[i], "sector": "alchemy"}
    put_input(batch_stack.services.backends.artifacts, f"batch/rate{bad}/in.jsonl", rows)
    job = submit(
        batch_stack,
        input_uri=f"batch/rate{bad}/in.jsonl",
        output_prefix=f"batch/rate{bad}/out/",
        key_field="ticker",
        max_error_rate=0.57,
    )
    Runner(batch_stack.services).work(job["job_id"], budget_s=60)
    done = BatchJobs(batch_stack.services).get(job["job_id"], SUBMITTER)
    assert (done["state"], done["errors"]) == (state, bad)


def test_too_many_errors_fail_the_job_listing_the_first(batch_stack: Stack) -> None:
    artifacts = batch_stack.services.backends.artifacts
    rows = companies(8)
    rows[1] = {**rows[1], "sector": "alchemy"}
    put_input(artifacts, "batch/strict/in.jsonl", rows)
    job = submit(
        batch_stack,
        input_uri="batch/strict/in.jsonl",
        output_prefix="batch/strict/out/",
        key_field="ticker",
    )
    Runner(batch_stack.services).work(job["job_id"], budget_s=60)

    done = BatchJobs(batch_stack.services).get(job["job_id"], SUBMITTER)
    assert done["state"] == "failed"
    assert "1 of 8 rows refused, more than max_error_rate 0.0 allows" in done["reason"]
    (first,) = done["first_errors"]
    assert (first["source"], first["line"], first["error"]["code"]) == (
        "batch/strict/in.jsonl",
        2,
        "invalid_values",
    )
    assert done["shards_done"] == 1  # no shard handed out after the job failed


def test_an_input_that_names_nothing_is_refused(batch_stack: Stack) -> None:
    with pytest.raises(InvalidValuesError, match="names no object") as refused:
        submit(batch_stack, input_uri="batch/nothing/*.jsonl", output_prefix="batch/nothing/out/")
    assert refused.value.details[0]["rule"] == "no_input"


def test_an_input_gone_after_submission_fails_the_job(batch_stack: Stack) -> None:
    services = batch_stack.services
    put_input(services.backends.artifacts, "batch/gone/in.jsonl", companies(4))
    job = submit(batch_stack, input_uri="batch/gone/in.jsonl", output_prefix="batch/gone/out/")
    (services.settings.data_dir / "artifacts" / "batch" / "gone" / "in.jsonl").unlink()
    Runner(services).work(job["job_id"], budget_s=60)

    done = BatchJobs(services).get(job["job_id"], SUBMITTER)
    assert (done["state"], done["reason"]) == (
        "failed",
        "input batch/gone/in.jsonl no longer exists",
    )
    assert done["first_errors"][0]["error"]["code"] == "not_found"


def test_cancel_stops_handing_out_shards(batch_stack: Stack) -> None:
    services = batch_stack.services
    put_input(services.backends.artifacts, "batch/cancel/in.jsonl", companies(12))
    job = submit(batch_stack, input_uri="batch/cancel/in.jsonl", output_prefix="batch/cancel/out/")
    runner = Runner(services)
    lease = runner.leases.claim(job["job_id"], runner.owner)
    assert lease is not None

    cancelled = BatchJobs(services).cancel(job["job_id"], SUBMITTER)
    assert (cancelled["state"], cancelled["reason"]) == ("cancelled", "cancelled by analyst")
    outcome = runner.process(lease)  # the shard in flight still commits its outputs
    assert outcome is not None
    assert runner.leases.commit(lease, outcome)
    assert runner.work(job["job_id"], budget_s=60) == (0, 0)

    done = BatchJobs(services).get(job["job_id"], SUBMITTER)
    assert (done["state"], done["shards_done"], done["rows_done"]) == ("cancelled", 1, 4)
    with pytest.raises(ConflictError, match="already ended: cancelled"):
        BatchJobs(services).cancel(job["job_id"], SUBMITTER)


def test_only_the_submitter_or_an_admin_sees_a_job(batch_stack: Stack) -> None:
    services = batch_stack.services
    put_input(services.backends.artifacts, "batch/own/in.jsonl", companies(1))
    job = submit(batch_stack, input_uri="batch/own/in.jsonl", output_prefix="batch/own/out/")
    other = Principal("someone", frozenset({"batch:submit", "model:risk:predict"}))
    with pytest.raises(NotFoundError):
        BatchJobs(services).get(job["job_id"], other)
    with pytest.raises(NotFoundError):
        BatchJobs(services).cancel(job["job_id"], other)
    admin = Principal("ops", frozenset({"admin"}))
    assert BatchJobs(services).get(job["job_id"], admin)["submitted_by"] == "analyst"


def test_submitting_needs_the_model_predict_permission(batch_stack: Stack) -> None:
    put_input(batch_stack.services.backends.artifacts, "batch/perm/in.jsonl", companies(1))
    dcf_only = Principal("analyst", frozenset({"batch:submit", "model:dcf:predict"}))
    with pytest.raises(ForbiddenError, match="model:risk:predict"):
        submit(batch_stack, dcf_only, input_uri="batch/perm/in.jsonl", output_prefix="batch/p/")


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("input_uri", "models/risk/1.0.0/model.json", "batch_prefix"),
        ("input_uri", "batch/../models/risk/", "artifact_location"),
        ("input_uri", "/batch/in.jsonl", "artifact_location"),
        ("output_prefix", "models/", "batch_prefix"),
        ("output_prefix", "batch/", "batch_prefix"),
        ("output_prefix", "batch/out", "artifact_location"),
        ("output_prefix", "batch/x/../../models/", "artifact_location"),
    ],
)
def test_locations_outside_batch_are_refused(
    batch_stack: Stack, field: str, value: str, rule: str
) -> None:
    body = {"input_uri": "batch/loc/in.jsonl", "output_prefix": "batch/loc/out/", field: value}
    with pytest.raises(InvalidValuesError) as refused:
        submit(batch_stack, **body)
    assert refused.value.details[0]["rule"] == rule


def test_an_output_prefix_is_used_by_one_job_only(batch_stack: Stack) -> None:
    artifacts = batch_stack.services.backends.artifacts
    put_input(artifacts, "batch/twice/in.jsonl", companies(2))
    submit(batch_stack, input_uri="batch/twice/in.jsonl", output_prefix="batch/twice/out/")
    with pytest.raises(ConflictError, match="belongs to another batch job"):
        submit(batch_stack, input_uri="batch/twice/in.jsonl", output_prefix="batch/twice/out/")
    artifacts.put("batch/twice/used/old.txt", b"x")
    with pytest.raises(ConflictError, match="already holds objects"):
        submit(batch_stack, input_uri="batch/twice/in.jsonl", output_prefix="batch/twice/used/")


def test_only_a_version_allowed_to_serve_is_run(batch_stack: Stack) -> None:
    put_input(batch_stack.services.backends.artifacts, "batch/ver/in.jsonl", companies(1))
    register_risk(batch_stack.lifecycle, "1.1.0", promote=False)
    common = {"input_uri": "batch/ver/in.jsonl", "output_prefix": "batch/ver/out/"}
    with pytest.raises(InvalidValuesError, match="is development") as refused:
        submit(batch_stack, stage=None, version="1.1.0", **common)
    assert refused.value.details[0]["rule"] == "not_serving"
    with pytest.raises(NotFoundError):
        submit(batch_stack, stage=None, version="9.9.9", **common)
    job = submit(batch_stack, stage=None, version="1.0.0", **common)
    assert job["requested"] == {"version": "1.0.0", "stage": None}


def test_a_version_withdrawn_while_the_job_runs_predicts_no_further_row(
    batch_stack: Stack,
) -> None:
    """A version moved back to development (or retired) after submission serves nothing
    more, batch jobs included: the job fails at its next shard, naming why."""
    put_input(batch_stack.services.backends.artifacts, "batch/withdrawn/in.jsonl", companies(5))
    register_risk(batch_stack.lifecycle, "1.2.0", promote=False)
    batch_stack.lifecycle.set_stage("risk", "1.2.0", "staging")
    job = submit(
        batch_stack,
        stage=None,
        version="1.2.0",
        input_uri="batch/withdrawn/in.jsonl",
        output_prefix="batch/withdrawn/out/",
    )
    batch_stack.lifecycle.set_stage("risk", "1.2.0", "development")
    Runner(batch_stack.services).work(job["job_id"], budget_s=60)
    done = BatchJobs(batch_stack.services).get(job["job_id"], SUBMITTER)
    assert (done["state"], done["predicted"]) == ("failed", 0)
    assert done["reason"] == "risk 1.2.0 was moved to development while the job ran"
    assert batch_stack.services.backends.artifacts.list("batch/withdrawn/out/") == []


def test_another_submitters_outputs_are_no_input_for_a_job(batch_stack: Stack) -> None:
    """A job's outputs hold its model's predictions: a job of someone else's (on a model
    they may call) would otherwise read them back in its error lines."""
    artifacts = batch_stack.services.backends.artifacts
    put_input(artifacts, "batch/theirs/in.jsonl", companies(4))
    first = submit(
        batch_stack,
        input_uri="batch/theirs/in.jsonl",
        output_prefix="batch/theirs/out/",
        key_field="ticker",
    )
    Runner(batch_stack.services).work(first["job_id"], budget_s=60)
    (predictions,) = [i.key for i in artifacts.list("batch/theirs/out/predictions-")]
    other = Principal("someone-else", SUBMITTER.permissions)
    for given in (predictions, "batch/theirs/out/", "batch/theirs/*/predictions-*"):
        with pytest.raises(ForbiddenError, match="another submitter's batch job"):
            submit(batch_stack, other, input_uri=given, output_prefix="batch/other/out/")
    mine = submit(batch_stack, input_uri=predictions, output_prefix="batch/theirs/again/")
    assert mine["input_uri"] == predictions  # the submitter reads their own outputs
    admin = Principal("ops", frozenset({"admin"}))
    assert submit(batch_stack, admin, input_uri=predictions, output_prefix="batch/ops/out/")
