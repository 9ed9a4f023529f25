"""The ``shadow_replay`` job: each active shadow's candidate run on the predictions the
payload log kept of production since the shadow's checkpoint, and each pair stored.

Per shadow and run: read the model's kept predictions after the checkpoint, oldest first,
a page at a time; keep those production answered, whose request id falls in the shadow's
``sampling_rate`` (the payload log's keyed hash) and whose inputs were kept whole (a record
with redacted fields is not the input production saw, so it is counted as skipped); run
the candidate on all their instances in one vectorised call through the batch engine
(``common.batch.rows``: a bad instance is set aside with its error); store one pair
document per kept prediction, its outputs sealed as the payload log's are; then move the
checkpoint. A pair's id is the shadow's and the kept prediction's, so a run that dies
before moving its checkpoint writes the same pairs again, never two.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import Field

from common.audit.payload_log import PREDICTION_LOG, PayloadLog
from common.backends import Backends
from common.backends.base import Transaction
from common.batch import rows as batch_rows
from common.core.config import Settings
from common.core.errors import ServiceError
from common.core.validation import StrictModel
from common.models import runtime_class
from common.registry.records import Registry, utcnow
from common.security.crypto import EnvelopeCipher
from common.serving.pipeline import SnapshotCache, resolve_component
from common.serving.pool import ModelPool
from common.shadow.shadows import PAIRS, SHADOWS, Shadow, active, pair_record_id

log = logging.getLogger("ipo.jobs")

PAGE = 500


class ReplayContext(Protocol):
    """What the replay reads and writes; the instance's Services is one."""

    @property
    def settings(self) -> Settings: ...

    @property
    def backends(self) -> Backends: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def snapshots(self) -> SnapshotCache: ...

    @property
    def pool(self) -> ModelPool: ...

    @property
    def payload_log(self) -> PayloadLog: ...

    @property
    def cipher(self) -> EnvelopeCipher: ...


COUNTS = (
    "replayed",
    "skipped_redacted",
    "other_variant",
    "other_production",
    "not_sampled",
    "erased",
)
"""What became of the kept predictions a replay read: compared, or why not. Only those
served by the production version the shadow started against are compared: once the
candidate is promoted, it would be compared with itself."""


class ReplayRequest(StrictModel):
    time_budget_s: float = Field(60.0, gt=0, le=540)


def segment_fields(kind: str) -> list[str]:
    """The input fields a report segments by: those with a closed set of text values
    (an enum in the kind's schema, such as ``sector`` or ``source``)."""
    schema = runtime_class(kind).input_schema()
    defs = schema.get("$defs", {})
    found = []
    for name, node in schema.get("properties", {}).items():
        ref = node.get("$ref", "")
        target = defs.get(ref.rsplit("/", 1)[-1], {}) if ref else node
        if "enum" in target:
            found.append(name)
    return sorted(found)


def _replay_page(
    ctx: ReplayContext, shadow: Shadow, page: list[tuple[str, dict[str, Any]]]
) -> dict[str, int]:
    """Pairs for one page of kept predictions; counts of what happened to them."""
    payload_log, documents = ctx.payload_log, ctx.backends.documents
    counts = dict.fromkeys(COUNTS, 0)
    chosen: list[tuple[str, dict[str, Any], list[dict[str, Any]], list[Any]]] = []
    for doc_id, data in page:
        if data.get("variant") != "production":
            counts["other_variant"] += 1
        elif data.get("model_version") != shadow.production_version:
            counts["other_production"] += 1  # the candidate itself, once promoted
        elif not payload_log.sampled(str(data.get("request_id")), shadow.sampling_rate):
            counts["not_sampled"] += 1
        elif data.get("redacted_fields"):
            counts["skipped_redacted"] += 1
        else:
            inputs, predictions = payload_log.open(doc_id, data)
            chosen.append((doc_id, data, list(inputs.get("instances") or []), predictions))
    if not chosen:
        return counts
    record = ctx.registry.get_version(shadow.model_id, shadow.version)
    runtime = ctx.pool.get(record).runtime
    components = {
        role: resolve_component(model_id, ctx.snapshots, ctx.pool)
        for role, model_id in runtime.components().items()
    }
    rows = [
        batch_rows.Row(line=i, key=None, instance=dict(instance))
        for i, instance in enumerate(x for _, _, instances, _ in chosen for x in instances)
    ]
    started = time.perf_counter()
    outputs = batch_rows.predict(
        runtime, rows, components, max_details=ctx.settings.max_error_details
    )
    per_instance_ms = (time.perf_counter() - started) * 1000 / max(len(rows), 1)
    segments = segment_fields(record.kind)
    at = 0
    for doc_id, data, instances, predictions in chosen:
        mine = range(at, at + len(instances))
        at += len(instances)
        pair_id = f"{shadow.shadow_id}.{doc_id}"
        sealed = ctx.cipher.seal(
            pair_record_id(pair_id),
            {
                "proprietary_metrics": {
                    "production": predictions,
                    "candidate": [outputs[i] for i in mine],
                    "errors": [rows[i].error for i in mine],
                    "segments": [
                        {f: str(inst[f]) for f in segments if isinstance(inst.get(f), str)}
                        for inst in instances
                    ],
                }
            },
        )
        production_ms = float(data.get("latency_ms") or 0.0) / max(len(instances), 1)
        pair = {
            "shadow_id": shadow.shadow_id,
            "model_id": shadow.model_id,
            "version": shadow.version,
            "production_version": data.get("model_version"),
            "request_id": data.get("request_id"),
            "principal": data.get("principal"),
            "time": data.get("time"),
            "instances": len(instances),
            "production_ms_per_instance": round(production_ms, 4),
            "candidate_ms_per_instance": round(per_instance_ms, 4),
            **sealed,
        }
        if documents.transaction(functools.partial(_store_pair, doc_id, pair_id, pair)):
            counts["replayed"] += 1
        else:
            counts["erased"] += 1
    return counts


def _store_pair(kept_id: str, pair_id: str, pair: dict[str, Any], tx: Transaction) -> bool:
    """Store a pair only while its kept prediction still exists: an erasure that deleted
    it (and then the subject's pairs) while the candidate ran must not be undone."""
    if tx.get(PREDICTION_LOG, kept_id) is None:
        return False
    tx.set(PAIRS, pair_id, pair)
    return True


def replay_shadow(ctx: ReplayContext, shadow: Shadow, spent: Callable[[], bool]) -> dict[str, Any]:
    """Replay one shadow until it has caught up or the budget is spent."""
    totals = dict.fromkeys(COUNTS, 0)
    after = (shadow.checkpoint, shadow.checkpoint_id)
    replayed = shadow.replayed
    while not spent():
        page = ctx.payload_log.since(shadow.model_id, after, PAGE)
        if not page:
            break
        counts = _replay_page(ctx, shadow, page)
        for name, count in counts.items():
            totals[name] += count
        last_id, last = page[-1]
        after = (str(last.get("time")), last_id)
        replayed += counts["replayed"]
        ctx.backends.documents.update(
            SHADOWS,
            shadow.shadow_id,
            {"checkpoint": after[0], "checkpoint_id": after[1], "replayed": replayed},
        )
        if len(page) < PAGE:
            break
    result: dict[str, Any] = {
        "shadow_id": shadow.shadow_id,
        "model_id": shadow.model_id,
        "version": shadow.version,
        **totals,
        "report_html": None,
    }
    if totals["replayed"]:
        result["report_html"] = _store_html(ctx, shadow)
    return result


def _store_html(ctx: ReplayContext, shadow: Shadow) -> str | None:
    """The report page of the shadow as it stands; a page that fails is logged, and the
    replay it follows still counts."""
    from common.monitoring.reports import store_report
    from common.shadow.page import render
    from common.shadow.report import report

    try:
        found = report(ctx.backends.documents, ctx.cipher, shadow)
        return store_report(ctx.backends.artifacts, "shadow", shadow.shadow_id, render(found))
    except Exception:
        log.exception("shadow report page not stored", extra={"shadow_id": shadow.shadow_id})
        return None


def replay(
    ctx: ReplayContext,
    request: ReplayRequest,
    *,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], str] = utcnow,
) -> dict[str, Any]:
    """Every running shadow, within the time budget; one failing does not stop the rest."""
    started = clock()

    def spent() -> bool:
        return clock() - started > request.time_budget_s

    results: list[Mapping[str, Any]] = []
    at = now()
    for shadow in sorted(active(ctx.backends.documents), key=lambda s: s.model_id):
        if not shadow.running(at):
            continue
        try:
            results.append(replay_shadow(ctx, shadow, spent))
        except ServiceError as exc:
            log.warning(
                "shadow not replayed: %s",
                exc.message,
                extra={"job": "shadow_replay", "shadow_id": shadow.shadow_id},
            )
            results.append(
                {"shadow_id": shadow.shadow_id, "model_id": shadow.model_id, "error": exc.message}
            )
    result = {
        "status": "partial" if spent() else "done",
        "shadows": results,
        "seconds": round(clock() - started, 3),
    }
    log.info("shadow_replay finished", extra={"job": "shadow_replay", "result": result})
    return result
