"""The retention purge job and erasure of one data subject."""

from __future__ import annotations

import time
from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.audit import retention
from common.batch import retention as batch_retention
from common.shadow import retention as shadow_retention


def run_purge_retention(call: Call) -> dict[str, Any]:
    """The audit trail's personal data and kept predictions, then ended batch jobs and
    old shadow pairs, all within the request's one time budget."""
    started, budget_s = time.monotonic(), float(call.body.time_budget_s)
    result = retention.purge_retention(call.services, call.body)

    def spent() -> bool:
        return time.monotonic() - started > budget_s

    documents = call.services.backends.documents
    result["batch_jobs_deleted"] = batch_retention.purge_finished_jobs(
        documents, result["cutoff"], spent
    )
    result["shadow_pairs_deleted"] = shadow_retention.purge_pairs(
        documents, result["cutoff"], spent
    )
    if spent():
        result["status"] = "partial"
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def run_erasure(call: Call) -> dict[str, Any]:
    result = retention.erase_subject(call.services, call.body)
    documents = call.services.backends.documents
    result["batch_jobs_redacted"] = batch_retention.erase_submitter(documents, call.body.subject)
    result["shadow_pairs_deleted"] = shadow_retention.erase_principal(documents, call.body.subject)
    return result


OPERATIONS: dict[str, Operation] = {
    "purgeRetention": Operation(run_purge_retention, body=TypeAdapter(retention.RetentionRequest)),
    "eraseSubject": Operation(run_erasure, body=TypeAdapter(retention.ErasureRequest)),
}
