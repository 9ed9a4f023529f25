"""Storage limits and erasure (GDPR): the ``purge_retention`` job and erasure requests.

Personal data lives in three places: the sealed part of audit entries (the caller's
address and user agent, and a prediction's bodies), the payload log's kept predictions
(deleted whole: nothing in them is needed to verify a chain) and experiment assignments
(the user a variant was assigned to). The audit chain's MACs cover only the hashes of the sealed
part and a commitment to the caller's keyed digest, so dropping the sealed part and the
digest keeps every chain verifiable: the record that a request happened, by whom and
with what outcome stays, the personal data goes. Entries written before the digest was
keyed have it under their MAC and keep it (``common.audit.macs``).

Both operations are idempotent: a second run finds nothing left to remove and leaves the
same state. An erasure request is itself audited, as every request is, with only the
hash of its body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import Field

from common.audit.macs import ERASABLE, HOLDS_PERSONAL, PERSONAL_COMMIT
from common.audit.payload_log import PREDICTION_LOG
from common.audit.trail import ENTRIES
from common.backends import Backends
from common.backends.base import DocumentStore, Filter, rfc3339
from common.core.config import Settings
from common.core.validation import StrictModel
from common.experiments.core import ASSIGNMENTS
from common.security.ratelimit import RateLimiter


class RetentionContext(Protocol):
    """What purge and erasure reach; the instance's Services is one."""

    @property
    def settings(self) -> Settings: ...

    @property
    def backends(self) -> Backends: ...

    @property
    def rate_limiter(self) -> RateLimiter | None: ...


log = logging.getLogger("ipo.jobs")

PAGE = 500


class RetentionRequest(StrictModel):
    time_budget_s: float = Field(60.0, gt=0, le=540)


class ErasureRequest(StrictModel):
    subject: str = Field(
        min_length=1,
        max_length=256,
        description="The data subject: a token subject or an experiment user id.",
    )


def _drop_sealed(
    services: RetentionContext, filters: list[Filter], budget: Callable[[], bool]
) -> int:
    """Remove the sealed part and the personal digest of every matching audit entry
    still holding them."""
    documents, dropped = services.backends.documents, 0
    while not budget():
        page = documents.query(ENTRIES, [*filters, Filter(HOLDS_PERSONAL, "==", True)], limit=PAGE)
        for doc in page:
            dropped_fields = {"sealed", *ERASABLE} if PERSONAL_COMMIT in doc.data else {"sealed"}
            kept = {k: v for k, v in doc.data.items() if k not in dropped_fields}
            documents.set(ENTRIES, doc.id, {**kept, HOLDS_PERSONAL: False})
            dropped += 1
        if len(page) < PAGE:
            break
    return dropped


def delete_matching(
    documents: DocumentStore, collection: str, filters: list[Filter], budget: Callable[[], bool]
) -> int:
    """Delete the documents ``filters`` match, a page at a time while ``budget`` allows;
    how many. The retention purges and erasures of every package use it."""
    deleted = 0
    while not budget():
        page = documents.query(collection, filters, limit=PAGE)
        for doc in page:
            documents.delete(collection, doc.id)
            deleted += 1
        if len(page) < PAGE:
            break
    return deleted


def purge_retention(
    services: RetentionContext,
    request: RetentionRequest,
    *,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Drop personal data older than ``retention_days``."""
    started = clock()

    def spent() -> bool:
        return clock() - started > request.time_budget_s

    days = services.settings.retention_days
    cutoff = rfc3339((now or datetime.now(UTC)) - timedelta(days=days))
    audit_dropped = _drop_sealed(services, [Filter("time", "<", cutoff)], spent)
    documents = services.backends.documents
    assignments = delete_matching(documents, ASSIGNMENTS, [Filter("at", "<", cutoff)], spent)
    kept = delete_matching(documents, PREDICTION_LOG, [Filter("time", "<", cutoff)], spent)
    result = {
        "status": "partial" if spent() else "done",
        "cutoff": cutoff,
        "retention_days": days,
        "audit_entries_redacted": audit_dropped,
        "assignments_deleted": assignments,
        "kept_predictions_deleted": kept,
        "seconds": round(clock() - started, 3),
    }
    log.info("purge_retention finished", extra={"job": "purge_retention", "result": result})
    return result


def erase_subject(services: RetentionContext, request: ErasureRequest) -> dict[str, Any]:
    """Remove one data subject's personal data: their experiment assignments, the sealed
    part and the personal digest of audit entries of requests they made, the predictions
    the payload log kept of those requests, and their rate-limit bucket."""
    subject = request.subject

    def never() -> bool:
        return False

    documents = services.backends.documents
    assignments = delete_matching(documents, ASSIGNMENTS, [Filter("subject", "==", subject)], never)
    redacted = _drop_sealed(services, [Filter("principal", "==", subject)], never)
    kept = delete_matching(documents, PREDICTION_LOG, [Filter("principal", "==", subject)], never)
    buckets = services.rate_limiter.forget(subject) if services.rate_limiter is not None else 0
    result = {
        "assignments_deleted": assignments,
        "audit_entries_redacted": redacted,
        "kept_predictions_deleted": kept,
        "rate_limit_buckets_deleted": buckets,
    }
    log.info("erasure finished", extra={"job": "erasure", "result": result})
    return result
