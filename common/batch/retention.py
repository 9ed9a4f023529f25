"""Batch job records under the retention limit and erasure, as the audit trail is.

A job's record names who submitted it (and who cancelled it), and its shards hold one
small document each. A job that ended more than ``retention_days`` ago is deleted with its
shards by the ``purge_retention`` job; its outputs stay in the bucket, which has a
lifecycle of its own. Erasing a data subject removes their name from every job they
submitted or cancelled; the job itself, running or not, is left as it is, readable by an
admin. The claim on a job's output prefix (``batch_outputs``) is kept, so the prefix is
never written by another job.
"""

from __future__ import annotations

from collections.abc import Callable

from common.backends.base import DocumentStore, Filter
from common.batch.spec import JOBS, SHARDS
from common.monitoring.compliance.context import PersonalRecords

PAGE = 500
ERASED = "(erased)"
PERSONAL = PersonalRecords(JOBS, "finished_at", ("submitted_by",), cleared=(ERASED,))
"""What GDPR_001 checks of batch jobs: an ended job past the retention period that still
names its submitter. (A cancelled job's reason names its canceller, who is the submitter
or an admin; the purge deletes the whole job.)"""


def purge_finished_jobs(documents: DocumentStore, cutoff: str, spent: Callable[[], bool]) -> int:
    """Delete the jobs that ended before ``cutoff`` and their shards; the count of jobs."""
    deleted = 0
    while not spent():
        page = documents.query(JOBS, [Filter("finished_at", "<", cutoff)], limit=PAGE)
        for job in page:
            if spent():
                return deleted
            # shards first: a job interrupted here is found again by the next run
            while shards := documents.query(SHARDS, [Filter("job_id", "==", job.id)], limit=PAGE):
                for shard in shards:
                    documents.delete(SHARDS, shard.id)
            documents.delete(JOBS, job.id)
            deleted += 1
        if len(page) < PAGE:
            break
    return deleted


def erase_submitter(documents: DocumentStore, subject: str) -> int:
    """Remove ``subject`` from the jobs they submitted or cancelled; the count of jobs."""
    changed: set[str] = set()
    for job in documents.query(JOBS, [Filter("submitted_by", "==", subject)]):
        documents.update(JOBS, job.id, {"submitted_by": ERASED})
        changed.add(job.id)
    for job in documents.query(JOBS, [Filter("reason", "==", f"cancelled by {subject}")]):
        documents.update(JOBS, job.id, {"reason": f"cancelled by {ERASED}"})
        changed.add(job.id)
    return len(changed)
