"""Submit, read and cancel batch jobs: what the routes call.

A job belongs to the principal who submitted it: only they, or an admin, read or cancel
it; anyone else is told it does not exist, as if it did not. Submitting needs
``batch:submit`` (the route's permission) and ``model:{model}:predict`` for the model.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from common.backends.base import Transaction
from common.batch import plan as planning
from common.batch.runner import BatchContext, Runner
from common.batch.spec import (
    JOBS,
    OUTPUTS,
    BatchJobRequest,
    input_location,
    output_location,
    view,
)
from common.core.errors import ConflictError, ForbiddenError, NotFoundError
from common.core.permissions import ADMIN
from common.promotion.lifecycle import Lifecycle
from common.registry.records import utcnow
from common.security.auth import Principal


class SubmitContext(BatchContext, Protocol):
    @property
    def lifecycle(self) -> Lifecycle: ...


def _store_key(artifacts_uri: Callable[[str], str], value: str) -> str:
    """A location given as the store's own URI (gs://bucket/..., file://...) as its key."""
    base = artifacts_uri("batch")[: -len("batch")]
    return value[len(base) :] if value.startswith(base) else value


class BatchJobs:
    def __init__(self, ctx: SubmitContext, *, clock: Callable[[], float] = time.time) -> None:
        self._ctx = ctx
        self._documents = ctx.backends.documents
        self._clock = clock

    def _refuse_others_outputs(self, keys: list[str], principal: Principal) -> None:
        """403 for an input inside another submitter's output prefix: a job's outputs
        hold a model's predictions, which a job on another model would hand to someone
        without that model's permission. Each folder of the inputs is looked up once."""
        if principal.allows(ADMIN):
            return
        owners: dict[str, str | None] = {}
        for key in keys:
            parts = key.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth]) + "/"
                if folder not in owners:
                    owners[folder] = self._output_owner(folder)
                owner = owners[folder]
                if owner is not None and owner != principal.subject:
                    raise ForbiddenError(
                        f"input {key} lies in the outputs of another submitter's batch job "
                        f"({folder}); only they or an admin may read them"
                    )

    def _output_owner(self, folder: str) -> str | None:
        """Who submitted the job whose outputs ``folder`` holds; "" when that job is gone
        (its claim outlives it), None when it holds no job's outputs."""
        claim = self._documents.get(OUTPUTS, hashlib.sha256(folder.encode()).hexdigest())
        if claim is None:
            return None
        job = self._documents.get(JOBS, str(claim.data.get("job_id")))
        return str(job.data.get("submitted_by", "")) if job is not None else ""

    def submit(self, request: BatchJobRequest, principal: Principal) -> dict[str, Any]:
        """Check, resolve and plan the job, record it, then predict shards for up to
        ``batch_submit_budget_s`` before answering; the scheduled workers do the rest."""
        artifacts = self._ctx.backends.artifacts
        source = input_location(_store_key(artifacts.uri, request.input_uri))
        prefix = output_location(_store_key(artifacts.uri, request.output_prefix))
        principal.require(f"model:{request.model}:predict")
        served = planning.resolve_version(
            request, self._ctx.registry, self._ctx.lifecycle, self._ctx.pool
        )
        files = planning.input_files(artifacts, source)
        self._refuse_others_outputs([f.key for f in files], principal)
        if artifacts.list(prefix):
            raise ConflictError(f"output_prefix {prefix} already holds objects; choose a new one")
        shards, rows = planning.plan(artifacts, files, self._ctx.settings.batch_shard_rows)
        keys = [f.key for f in files]
        job_id = uuid.uuid4().hex
        now = utcnow()
        job: dict[str, Any] = {
            "job_id": job_id,
            "model_id": request.model,
            "version": served.record.version,
            "kind": served.record.kind,
            "requested": {"version": request.version, "stage": request.stage},
            "components": served.components,
            "input_uri": source,
            "output_prefix": prefix,
            "output_uri": artifacts.uri(prefix.rstrip("/")) + "/",
            "key_field": request.key_field,
            "max_error_rate": request.max_error_rate,
            "submitted_by": principal.subject,
            "created_at": now,
            "state": "running",
            "reason": "",
            "files": keys,
            "plan": planning.encode_plan(shards, keys),
            "shards_total": len(shards),
            "next_shard": 0,
            "shards_done": 0,
            "rows_total": rows,
            "rows_done": 0,
            "predicted": 0,
            "errors": 0,
            "first_errors": [],
            "last_commit_at": None,
            "finished_at": None,
        }

        def record(tx: Transaction) -> None:
            # the prefix is claimed in the job's own transaction: of two jobs given the
            # same output prefix, one is refused, so none adopts the other's outputs
            tx.create(OUTPUTS, hashlib.sha256(prefix.encode()).hexdigest(), {"job_id": job_id})
            tx.create(JOBS, job_id, job)

        try:
            self._documents.transaction(record)
        except ConflictError:
            raise ConflictError(
                f"output_prefix {prefix} belongs to another batch job; choose a new one"
            ) from None
        budget = self._ctx.settings.batch_submit_budget_s
        if budget > 0:
            Runner(self._ctx).work(job_id, budget)
        return self.get(job_id, principal)

    def _own(self, job_id: str, principal: Principal) -> dict[str, Any]:
        doc = self._documents.get(JOBS, job_id) if job_id.isalnum() else None
        if doc is None or not (
            doc.data["submitted_by"] == principal.subject or principal.allows(ADMIN)
        ):
            raise NotFoundError(f"no batch job {job_id}")
        return doc.data

    def get(self, job_id: str, principal: Principal) -> dict[str, Any]:
        return view(self._own(job_id, principal), self._clock())

    def cancel(self, job_id: str, principal: Principal) -> dict[str, Any]:
        """Stop handing out shards; a shard being predicted still commits its outputs."""
        self._own(job_id, principal)

        def cancel(tx: Transaction) -> str:
            doc = tx.get(JOBS, job_id)
            if doc is None:
                raise NotFoundError(f"no batch job {job_id}")
            state = str(doc.data["state"])
            if state == "running":
                tx.update(
                    JOBS,
                    job_id,
                    {
                        "state": "cancelled",
                        "reason": f"cancelled by {principal.subject}",
                        "finished_at": utcnow(),
                    },
                )
            return state

        before = self._documents.transaction(cancel)
        if before != "running":
            raise ConflictError(f"batch job {job_id} already ended: {before}")
        return self.get(job_id, principal)
