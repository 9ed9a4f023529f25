"""A worker: claims shards, predicts them and commits each once its outputs exist.

Outputs are written create-only, errors file first, then predictions. A worker that
finds an output already there (a worker before it crashed after writing, or is still
racing it) keeps the stored object and counts what that object holds, so the counts
always describe the files. Only then is the shard committed (common/batch/leases.py).
Any number of workers may run at once, in threads, processes or function instances.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic import Field

from common.backends import Backends
from common.backends.base import Filter
from common.batch import rows as batch_rows
from common.batch.leases import Lease, Leases, Outcome
from common.batch.spec import FIRST_ERRORS, JOBS, output_key
from common.core.config import Settings
from common.core.errors import ConflictError, NotFoundError, ServiceError
from common.core.validation import StrictModel
from common.models.base import Component, ModelRuntime
from common.registry.records import Registry
from common.serving.pool import ModelPool

log = logging.getLogger("ipo.batch")


class BatchContext(Protocol):
    """What a batch worker reads and writes; the instance's Services is one."""

    @property
    def settings(self) -> Settings: ...

    @property
    def backends(self) -> Backends: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def pool(self) -> ModelPool: ...


class RunBatchJobsRequest(StrictModel):
    """``POST /v1/jobs/batch-jobs``, Cloud Scheduler's call every minute."""

    time_budget_s: float = Field(50.0, gt=0, le=540)


@dataclass(frozen=True)
class _Model:
    runtime: ModelRuntime
    components: dict[str, Component]
    job: dict[str, Any]


WITHDRAWN = ("development", "retired")
"""Stages a version serves nothing from, batch jobs included."""


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Runner:
    def __init__(
        self,
        ctx: BatchContext,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        leases: Leases | None = None,
    ) -> None:
        self._ctx = ctx
        self._documents = ctx.backends.documents
        self._artifacts = ctx.backends.artifacts
        self.owner = owner or worker_id()
        self._clock = clock
        self.leases = leases or Leases(self._documents, lease_s=ctx.settings.batch_lease_s)
        self._models: dict[str, _Model] = {}

    def run_pending(self, budget_s: float) -> dict[str, Any]:
        """The scheduled run: work through every running job, oldest first, until the
        budget is spent; what each job got from this worker."""
        deadline = self._clock() + budget_s
        running = self._documents.query(JOBS, [Filter("state", "==", "running")])
        done: dict[str, Any] = {}
        for doc in sorted(running, key=lambda d: (d.data["created_at"], d.id)):
            if self._clock() >= deadline:
                break
            shards, rows = self.work(doc.id, deadline - self._clock())
            if shards:
                done[doc.id] = {"shards": shards, "rows": rows}
        return {
            "worker": self.owner,
            "jobs_running": len(running),
            "committed": done,
            "out_of_time": self._clock() >= deadline,
        }

    def work(self, job_id: str, budget_s: float) -> tuple[int, int]:
        """Claim and finish shards of one job until none is left or the budget is spent:
        (shards committed, rows in them). A shard is started only inside the budget."""
        deadline = self._clock() + budget_s
        shards = rows = 0
        lease = self.leases.claim(job_id, self.owner) if budget_s > 0 else None
        while lease is not None:
            try:
                outcome = self.process(lease)
            except ServiceError as exc:
                log.warning(
                    "batch shard given back: %s",
                    exc.message,
                    extra={"job_id": job_id, "shard": lease.index},
                )
                self.leases.release(lease)
                break
            if outcome is None:
                break
            in_time = self._clock() < deadline
            counted, lease = self.leases.commit_and_claim(lease, outcome, claim_next=in_time)
            if counted:
                shards, rows = shards + 1, rows + outcome.predicted + outcome.errors
            if lease is None and in_time:  # no unclaimed shard: an expired lease, if any
                lease = self.leases.claim(job_id, self.owner)
        return shards, rows

    def process(self, lease: Lease) -> Outcome | None:
        """Predict one shard and store its outputs; None when the job cannot go on (an
        input gone or changed since submission), which fails it."""
        model = self._model(lease.job_id)
        shard, key_field = lease.shard, model.job.get("key_field")
        withdrawn = self._withdrawn(model.job)
        if withdrawn is not None:
            self._fail(lease, ConflictError(withdrawn))
            return None
        try:
            data = self._artifacts.read_range(shard.source, shard.start, shard.end)
        except NotFoundError:
            self._fail(lease, NotFoundError(f"input {shard.source} no longer exists"))
            return None
        parsed = batch_rows.parse(data, shard.first_line, key_field)
        if len(parsed) != shard.rows:
            self._fail(
                lease,
                ConflictError(
                    f"input {shard.source} changed since submission: lines "
                    f"{shard.first_line}.. held {shard.rows} rows then, {len(parsed)} now"
                ),
            )
            return None
        predictions = batch_rows.predict(
            model.runtime,
            parsed,
            model.components,
            max_details=self._ctx.settings.max_error_details,
        )
        good, bad = batch_rows.output_lines(parsed, predictions, shard.source, key_field)
        prefix = model.job["output_prefix"]
        stored_bad = self._store(output_key(prefix, "errors", lease.index), bad)
        stored_good = self._store(output_key(prefix, "predictions", lease.index), good)
        return Outcome(
            predicted=stored_good.count(b"\n"),
            errors=stored_bad.count(b"\n"),
            first_errors=[orjson.loads(line) for line in stored_bad.splitlines()[:FIRST_ERRORS]],
        )

    def _withdrawn(self, job: dict[str, Any]) -> str | None:
        """Why the job's version (or a component's) may no longer serve, else None. It is
        read before every shard: a version moved back to development or retired after
        submission predicts no further row (a deprecated one does: it was replaced, not
        withdrawn, and may be rolled back to)."""
        used = [(job["model_id"], job["version"])]
        used += [(c["model_id"], c["version"]) for c in job["components"].values()]
        for model_id, version in used:
            stage = self._ctx.registry.get_version(model_id, version).stage
            if stage in WITHDRAWN:
                return f"{model_id} {version} was moved to {stage} while the job ran"
        return None

    def _store(self, key: str, data: bytes) -> bytes:
        """Create the object, or keep the one a worker before this one stored."""
        try:
            self._artifacts.put(key, data)
            return data
        except ConflictError:
            stored = self._artifacts.get(key)
            if stored != data:
                log.warning("batch output kept as first written, which differs", extra={"key": key})
            return stored

    def _fail(self, lease: Lease, problem: ServiceError) -> None:
        error = {
            "source": lease.shard.source,
            "line": lease.shard.first_line,
            "error": batch_rows.error_of(problem),
        }
        self.leases.fail(lease.job_id, problem.message, error)

    def _model(self, job_id: str) -> _Model:
        """The job's version and components, exactly as recorded at submission, loaded
        once per worker through the pool (SHA-256 checked)."""
        found = self._models.get(job_id)
        if found is None:
            doc = self._documents.get(JOBS, job_id)
            if doc is None:
                raise NotFoundError(f"batch job {job_id} does not exist")
            job = {k: v for k, v in doc.data.items() if k != "plan"}
            registry, pool = self._ctx.registry, self._ctx.pool
            record = registry.get_version(job["model_id"], job["version"])
            components = {
                role: Component(
                    c["model_id"],
                    c["version"],
                    pool.get(registry.get_version(c["model_id"], c["version"])).runtime,
                )
                for role, c in job["components"].items()
            }
            found = self._models[job_id] = _Model(pool.get(record).runtime, components, job)
        return found
