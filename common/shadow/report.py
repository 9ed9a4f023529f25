"""A shadow's report, from its stored pairs: the comparison, latency per instance, error
rates, and the summary the gate reads (its HTML page: ``common/shadow/page.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from common.backends.base import DocumentStore, Filter
from common.security.crypto import EnvelopeCipher
from common.shadow.compare import DEFAULT_TOLERANCE, Row, compare
from common.shadow.shadows import PAIRS, Shadow, pair_record_id

MAX_PAIRS = 20_000
"""Pairs a report reads, newest kept; past it the report says it is of the latest ones."""


def report(
    documents: DocumentStore,
    cipher: EnvelopeCipher,
    shadow: Shadow,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    pairs = documents.query(PAIRS, [Filter("shadow_id", "==", shadow.shadow_id)])
    pairs.sort(key=lambda d: (str(d.data.get("time")), d.id))
    truncated = len(pairs) > MAX_PAIRS
    pairs = pairs[-MAX_PAIRS:]
    rows: list[Row] = []
    production_ms, candidate_ms = [], []
    for doc in pairs:
        opened = cipher.open(pair_record_id(doc.id), doc.data)["proprietary_metrics"]
        for production, candidate, error, segments in zip(
            opened["production"],
            opened["candidate"],
            opened["errors"],
            opened["segments"],
            strict=True,
        ):
            rows.append(Row(segments, production, candidate, error))
        count = int(doc.data.get("instances") or 0)
        production_ms += [float(doc.data.get("production_ms_per_instance") or 0.0)] * count
        candidate_ms += [float(doc.data.get("candidate_ms_per_instance") or 0.0)] * count
    compared = compare(rows, tolerance=tolerance)
    return {
        "shadow": shadow.model_dump(mode="json"),
        "pairs": len(pairs),
        "truncated": truncated,
        **compared,
        "latency_ms_per_instance": {
            "production": round(float(np.mean(production_ms)), 4) if production_ms else None,
            "candidate": round(float(np.mean(candidate_ms)), 4) if candidate_ms else None,
            "note": "production: the served request's time to its answer, per instance; "
            "candidate: the replay's vectorised call, per instance",
        },
        "production_error_rate": 0.0 if rows else None,
    }


def evidence(
    documents: DocumentStore, cipher: EnvelopeCipher, model_id: str, version: str
) -> Mapping[str, Any] | None:
    """The summary the promotion gate's shadow criterion reads: the newest shadow of this
    version, or None when there is none."""
    from common.core.errors import NotFoundError
    from common.shadow.shadows import latest

    try:
        shadow = latest(documents, model_id, version)
    except NotFoundError:
        return None
    found = report(documents, cipher, shadow)
    summary: dict[str, Any] = found["summary"]
    return {**summary, "shadow_id": shadow.shadow_id}
