"""Batch prediction jobs (docs/BATCH.md): submit, read, cancel, and the scheduled run.

The engine is common/batch; these adapt a call to it. Submitting needs ``batch:submit``
(the route) and ``model:{model}:predict`` for the body's model (checked by the engine);
reading and cancelling, the submitter or an admin.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation, Reply
from common.batch.jobs import BatchJobs
from common.batch.runner import RunBatchJobsRequest, Runner
from common.batch.spec import BatchJobRequest


def create_batch_job(call: Call) -> Reply:
    job = BatchJobs(call.services).submit(call.body, call.principal)
    call.labels.update(model_id=job["model_id"], model_version=job["version"])
    return Reply(job, status=201, headers={"Location": f"/v1/batch-jobs/{job['job_id']}"})


def get_batch_job(call: Call) -> dict[str, Any]:
    return BatchJobs(call.services).get(call.params["job_id"], call.principal)


def cancel_batch_job(call: Call) -> dict[str, Any]:
    return BatchJobs(call.services).cancel(call.params["job_id"], call.principal)


def run_batch_jobs(call: Call) -> dict[str, Any]:
    request: RunBatchJobsRequest = call.body
    return Runner(call.services).run_pending(request.time_budget_s)


OPERATIONS: dict[str, Operation] = {
    "createBatchJob": Operation(create_batch_job, body=TypeAdapter(BatchJobRequest)),
    "getBatchJob": Operation(get_batch_job),
    "cancelBatchJob": Operation(cancel_batch_job),
    "runBatchJobs": Operation(run_batch_jobs, body=TypeAdapter(RunBatchJobsRequest)),
}
