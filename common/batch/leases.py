"""Shards claimed, taken over and committed in store transactions.

A worker claims the job's next unclaimed shard (the job's ``next_shard`` cursor moves in
the same transaction that writes the shard's lease), or else a shard whose lease has
expired. Commit marks the shard done and adds its counts to the job in one transaction
that first reads whether the shard is already done: a shard is counted once however many
workers finished it. The job's end (succeeded, or failed when its errors can no longer
stay within ``max_error_rate``) is decided in that same transaction.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.backends.base import DocumentStore, Filter, Transaction, rfc3339
from common.batch.spec import FIRST_ERRORS, JOBS, SHARDS, Shard, shard_id

MAX_ATTEMPTS = 5
"""Leases a shard may be given before its job fails: a shard that kills every worker
(one that runs out of memory, say) must not be retried for ever."""


def _at(seconds: float) -> str:
    return rfc3339(datetime.fromtimestamp(seconds, UTC))


@dataclass(frozen=True)
class Lease:
    job_id: str
    index: int
    shard: Shard
    owner: str
    attempt: int


@dataclass(frozen=True)
class Outcome:
    """What a shard's stored outputs hold: rows predicted, rows refused, the first errors."""

    predicted: int
    errors: int
    first_errors: list[dict[str, Any]] = field(default_factory=list)


def decode_plan(job: dict[str, Any]) -> list[Shard]:
    files: list[str] = job["files"]
    return [
        Shard(source=files[f], start=s, end=e, first_line=line, rows=rows)
        for f, s, e, line, rows in json.loads(job["plan"])
    ]


class Leases:
    def __init__(
        self,
        documents: DocumentStore,
        *,
        lease_s: float,
        clock: Callable[[], float] = time.time,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._documents = documents
        self._lease_s = lease_s
        self._clock = clock
        self._max_attempts = max_attempts
        self._plans: dict[str, list[Shard]] = {}

    def _plan(self, job_id: str, job: dict[str, Any]) -> list[Shard]:
        """A job's plan never changes, so each worker decodes it once."""
        if job_id not in self._plans:
            self._plans[job_id] = decode_plan(job)
        return self._plans[job_id]

    def claim(self, job_id: str, owner: str) -> Lease | None:
        """The next unclaimed shard, else one whose lease expired; None when neither."""
        return self._claim_next(job_id, owner) or self._take_over(job_id, owner)

    def _claim_next(self, job_id: str, owner: str) -> Lease | None:
        def claim(tx: Transaction) -> tuple[int, dict[str, Any]] | None:
            doc = tx.get(JOBS, job_id)
            if doc is None or doc.data["state"] != "running":
                return None
            changes: dict[str, Any] = {}
            index = self._lease_next(tx, job_id, doc.data, owner, changes)
            if index is None:
                return None
            tx.update(JOBS, job_id, changes)
            return index, doc.data

        found = self._documents.transaction(claim)
        if found is None:
            return None
        index, job = found
        return Lease(job_id, index, self._plan(job_id, job)[index], owner, 1)

    def _lease_next(
        self,
        tx: Transaction,
        job_id: str,
        job: dict[str, Any],
        owner: str,
        changes: dict[str, Any],
    ) -> int | None:
        """Lease the job's next unclaimed shard in ``tx``; the cursor's move goes into
        ``changes``, for the caller's one write of the job."""
        index = int(job["next_shard"])
        if index >= int(job["shards_total"]):
            return None
        changes["next_shard"] = index + 1
        tx.create(
            SHARDS,
            shard_id(job_id, index),
            {
                "job_id": job_id,
                "index": index,
                "state": "leased",
                "owner": owner,
                "attempts": 1,
                "lease_expires": _at(self._clock() + self._lease_s),
            },
        )
        return index

    def _take_over(self, job_id: str, owner: str) -> Lease | None:
        now = _at(self._clock())
        leased = self._documents.query(
            SHARDS, [Filter("job_id", "==", job_id), Filter("state", "==", "leased")]
        )
        for doc in sorted(leased, key=lambda d: d.data["index"]):
            if doc.data["lease_expires"] < now:
                lease = self._documents.transaction(
                    functools.partial(self._take, job_id=job_id, sid=doc.id, owner=owner)
                )
                if lease is not None:
                    return lease
        return None

    def _take(self, tx: Transaction, job_id: str, sid: str, owner: str) -> Lease | None:
        job, shard = tx.get(JOBS, job_id), tx.get(SHARDS, sid)
        if job is None or shard is None or job.data["state"] != "running":
            return None
        now = self._clock()
        if shard.data["state"] != "leased" or shard.data["lease_expires"] >= _at(now):
            return None  # committed, or taken over by another worker since the query
        index, attempts = int(shard.data["index"]), int(shard.data["attempts"])
        if attempts >= self._max_attempts:
            reason = (
                f"shard {index} was leased {attempts} times without being committed; "
                "each worker that took it stopped before finishing it"
            )
            tx.update(JOBS, job_id, _ended("failed", reason, now))
            return None
        tx.update(
            SHARDS,
            sid,
            {"owner": owner, "attempts": attempts + 1, "lease_expires": _at(now + self._lease_s)},
        )
        return Lease(job_id, index, self._plan(job_id, job.data)[index], owner, attempts + 1)

    def release(self, lease: Lease) -> None:
        """Give a shard back at once (a worker that hit a transient fault), so the next
        worker need not wait for the lease to run out."""

        def release(tx: Transaction) -> None:
            sid = shard_id(lease.job_id, lease.index)
            shard = tx.get(SHARDS, sid)
            held = shard is not None and shard.data["state"] == "leased"
            if held and shard is not None and shard.data["owner"] == lease.owner:
                tx.update(SHARDS, sid, {"lease_expires": _at(self._clock() - 1)})

        self._documents.transaction(release)

    def commit(self, lease: Lease, outcome: Outcome) -> bool:
        """Count a shard whose outputs exist; False if it was already counted."""
        return self.commit_and_claim(lease, outcome, claim_next=False)[0]

    def commit_and_claim(
        self, lease: Lease, outcome: Outcome, *, claim_next: bool = True
    ) -> tuple[bool, Lease | None]:
        """Count a shard (False if it was already counted) and, with ``claim_next``, lease
        the job's next unclaimed shard in the same transaction: one write of the job's
        record per shard instead of two, which Firestore sustains for more workers."""
        owner = lease.owner

        def commit(tx: Transaction) -> tuple[bool, int | None, dict[str, Any] | None]:
            sid = shard_id(lease.job_id, lease.index)
            shard, job = tx.get(SHARDS, sid), tx.get(JOBS, lease.job_id)
            if shard is None or job is None or shard.data["state"] == "done":
                return False, None, None
            now = self._clock()
            tx.update(
                SHARDS,
                sid,
                {
                    "state": "done",
                    "predicted": outcome.predicted,
                    "errors": outcome.errors,
                    "committed_by": lease.owner,
                    "committed_at": _at(now),
                },
            )
            data = job.data
            errors = int(data["errors"]) + outcome.errors
            first = list(data["first_errors"])
            changes: dict[str, Any] = {
                "rows_done": int(data["rows_done"]) + outcome.predicted + outcome.errors,
                "predicted": int(data["predicted"]) + outcome.predicted,
                "errors": errors,
                "shards_done": int(data["shards_done"]) + 1,
                "first_errors": first + outcome.first_errors[: FIRST_ERRORS - len(first)],
                "last_commit_at": _at(now),
            }
            if data["state"] == "running":
                if errors > allowed_errors(float(data["max_error_rate"]), int(data["rows_total"])):
                    reason = (
                        f"{errors} of {data['rows_total']} rows refused, more than "
                        f"max_error_rate {data['max_error_rate']} allows"
                    )
                    changes.update(_ended("failed", reason, now))
                elif changes["shards_done"] == int(data["shards_total"]):
                    changes.update(_ended("succeeded", "", now))
            following = None
            if claim_next and changes.get("state", data["state"]) == "running":
                following = self._lease_next(tx, lease.job_id, data, owner, changes)
            tx.update(JOBS, lease.job_id, changes)
            return True, following, data

        counted, index, job = self._documents.transaction(commit)
        if index is None or job is None:
            return counted, None
        return counted, Lease(lease.job_id, index, self._plan(lease.job_id, job)[index], owner, 1)

    def fail(self, job_id: str, reason: str, error: dict[str, Any] | None = None) -> None:
        """End a running job as failed (an input gone since submission, say)."""

        def fail(tx: Transaction) -> None:
            job = tx.get(JOBS, job_id)
            if job is not None and job.data["state"] == "running":
                changes = _ended("failed", reason, self._clock())
                first = list(job.data["first_errors"])
                if error is not None and len(first) < FIRST_ERRORS:
                    changes["first_errors"] = [*first, error]
                tx.update(JOBS, job_id, changes)

        self._documents.transaction(fail)


def allowed_errors(max_error_rate: float, rows_total: int) -> int:
    """The most rows a job may refuse: ``max_error_rate`` of its rows, rounded down. The
    product is rounded to nine places first: 0.57 x 100 is 56.99999999999999 in binary
    floating point, and a job with exactly 57 % refused must not fail at 57 %."""
    return math.floor(round(max_error_rate * rows_total, 9))


def _ended(state: str, reason: str, now: float) -> dict[str, Any]:
    return {"state": state, "reason": reason, "finished_at": _at(now)}
