"""The ``drift_scan`` job: compare what each production version was asked lately with what
it was built on, and say whether its predictions moved.

For each model with a production version, the job reads that version's drift windows
(``common/monitoring/sampling.py``) of the last ``window_hours`` UTC hours, merges their shards,
and tests every baseline feature (``common/monitoring/drift.py``). The **prediction drift score** is
the largest PSI among the ``prediction.*`` features with enough data; above
``drift.PSI_FLAG`` the model is flagged. Each model gets one report document,
``drift_reports/<model>@<version>@<window_end>`` (rerunning within the hour replaces it),
an HTML page of it, ``reports/drift/<report id>.html`` (``common/monitoring/reports.py``; its key is
the document's ``report_html``, null when rendering failed, which never fails the job),
and one log line on ``ipo.jobs`` that a log-based metric can read.

Reading windows takes one query per 30 hours of window per model: ``model_id ==``,
``version ==`` and ``window in [...]``, equality filters only, which Firestore serves from
its automatic single-field indexes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol

from pydantic import Field

from common.backends import Backends
from common.backends.base import Filter
from common.core.config import Settings
from common.core.errors import NotFoundError, ServiceError
from common.core.validation import StrictModel
from common.monitoring import drift, reports
from common.monitoring.sampling import PREDICTION, DriftSampler
from common.monitoring.windows import COLLECTION as WINDOWS
from common.monitoring.windows import FeatureCounts, Kind, WindowCounts
from common.registry.records import ModelVersion, Registry, utcnow


class DriftScanContext(Protocol):
    """What the drift scan reads and writes; the instance's Services is one."""

    @property
    def settings(self) -> Settings: ...

    @property
    def backends(self) -> Backends: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def drift_sampler(self) -> DriftSampler: ...


log = logging.getLogger("ipo.jobs")

REPORTS = "drift_reports"
WINDOWS_PER_QUERY = 30
"""Firestore's limit on the values of one ``in`` filter."""
INSUFFICIENT = "insufficient data"


class DriftScanRequest(StrictModel):
    models: list[Annotated[str, Field(max_length=63)]] | None = Field(None, max_length=50)
    window_hours: int | None = Field(None, ge=1, le=744)
    time_budget_s: float = Field(60.0, gt=0, le=540)


def hour_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def drift_scan(
    services: DriftScanContext,
    request: DriftScanRequest,
    *,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    started = clock()
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = request.window_hours or services.settings.drift_window_hours
    windows = [hour_of(end - timedelta(hours=i)) for i in range(hours)]
    try:
        services.drift_sampler.flush()  # this instance's latest rows count too
    except ServiceError as exc:
        log.warning("drift samples of this instance not saved: %s", exc.message)
    if request.models is None:
        model_ids = [m.model_id for m in services.registry.list_models()]
    else:
        model_ids = list(dict.fromkeys(request.models))
    models: dict[str, Any] = {}
    out_of_time = failed = False
    for model_id in model_ids:
        if out_of_time or clock() - started > request.time_budget_s:
            out_of_time, models[model_id] = True, {"skipped": "time budget spent"}
        else:
            try:
                record = _production(services, model_id)
                summary = (
                    {"skipped": record}
                    if isinstance(record, str)
                    else _scan(services, record, windows)
                )
            except ServiceError as exc:
                failed, summary = True, {"skipped": exc.message}
            models[model_id] = summary
        if "skipped" in models[model_id]:
            log.info(
                "drift scan skipped %s: %s",
                model_id,
                models[model_id]["skipped"],
                extra={"job": "drift_scan", "model_id": model_id, **models[model_id]},
            )
    return {
        "status": "partial" if out_of_time or failed else "done",
        "window_start": windows[-1],
        "window_end": windows[0],
        "models": models,
        "seconds": round(clock() - started, 3),
    }


def _production(services: DriftScanContext, model_id: str) -> ModelVersion | str:
    """The model's production version, or why it cannot be scanned."""
    try:
        model = services.registry.get_model(model_id)
    except NotFoundError:
        return "not registered"
    if model.production_version is None:
        return "no production version"
    record = services.registry.get_version(model_id, model.production_version)
    if not record.drift_baseline:
        return "no drift baseline"
    return record


def live_windows(
    services: DriftScanContext, model_id: str, version: str, windows: list[str]
) -> WindowCounts:
    """Every shard of the named windows, merged."""
    total = WindowCounts()
    rng = random.Random(f"{model_id}@{version}@{windows[0]}")  # noqa: S311 - sampling
    for i in range(0, len(windows), WINDOWS_PER_QUERY):
        chunk = windows[i : i + WINDOWS_PER_QUERY]
        documents = services.backends.documents.query(
            WINDOWS,
            [
                Filter("model_id", "==", model_id),
                Filter("version", "==", version),
                Filter("window", "in", chunk),
            ],
        )
        for document in sorted(documents, key=lambda d: d.id):
            total.absorb(WindowCounts.from_document(document.data), rng)
    return total


def _live(spec: Mapping[str, Any], counts: FeatureCounts | None) -> drift.LiveFeature:
    kind: Kind = "categorical" if spec.get("type") == "categorical" else "numeric"
    bins = len(spec.get("edges", ())) + 1 if kind == "numeric" else 0
    if counts is None or counts.kind != kind or len(counts.counts) != bins:
        counts = FeatureCounts(kind, [0] * bins)
    return counts.live()


def _scan(services: DriftScanContext, record: ModelVersion, windows: list[str]) -> dict[str, Any]:
    model_id, version = record.model_id, record.version
    total = live_windows(services, model_id, version, windows)
    features = {
        name: (spec, _live(spec, total.features.get(name)))
        for name, spec in record.drift_baseline.items()
        if isinstance(spec, Mapping) and spec.get("type") in ("numeric", "categorical")
    }
    try:
        results = drift.assess(features, min_samples=services.settings.drift_min_samples)
    except ValueError as exc:
        return {"version": version, "skipped": f"drift baseline not usable: {exc}"}
    drifting = [r.feature for r in results if r.status == "drift"]
    scores = [
        float(r.psi)
        for r in results
        if r.feature.startswith(PREDICTION) and r.status != INSUFFICIENT and r.psi is not None
    ]
    score = max(scores) if scores else None
    flagged = score is not None and score > drift.PSI_FLAG
    report_id = f"{model_id}@{version}@{windows[0]}"
    document: dict[str, Any] = {
        "model_id": model_id,
        "version": version,
        "created_at": utcnow(),
        "window_start": windows[-1],
        "window_end": windows[0],
        "rows": total.n,
        "served": total.served,
        "features": [r.as_json() for r in results],
        "drifting": drifting,
        "prediction_drift_score": score,
        "flagged": flagged,
        "report_html": None,
    }
    services.backends.documents.set(REPORTS, report_id, document)
    report_html = _html_report(services, report_id, document, features, results)
    if report_html is not None:
        document["report_html"] = report_html
        services.backends.documents.update(REPORTS, report_id, {"report_html": report_html})
    log.log(
        logging.WARNING if flagged else logging.INFO,
        "drift scan %s@%s: prediction drift score %s%s",
        model_id,
        version,
        "n/a" if score is None else f"{score:.4f}",
        ", flagged" if flagged else "",
        extra={
            "job": "drift_scan",
            "model_id": model_id,
            "model_version": version,
            "prediction_drift_score": score,
            "flagged": flagged,
            "drifting": drifting,
        },
    )
    return {
        "version": version,
        "rows": total.n,
        "served": total.served,
        "drifting": drifting,
        "prediction_drift_score": score,
        "flagged": flagged,
        "report_id": report_id,
        "report_html": report_html,
    }


def _html_report(
    services: DriftScanContext,
    report_id: str,
    document: Mapping[str, Any],
    features: Mapping[str, tuple[Mapping[str, Any], drift.LiveFeature]],
    results: list[drift.FeatureDrift],
) -> str | None:
    """Render and store the report's HTML page; its key, or None when that failed."""
    try:
        charts = reports.drift_charts(features, results, PREDICTION)
        page = reports.render_drift_report(document, charts)
        return reports.store_report(services.backends.artifacts, "drift", report_id, page)
    except Exception:
        log.warning("drift report %s: HTML report not stored", report_id, exc_info=True)
        return None
