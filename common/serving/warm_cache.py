"""The ``warm_cache`` job: predict the most requested rows of every model again, so the
first request after an expiry, a promotion or a new instance is a cache hit.

Rows come from the counts serving records (``common/serving/hot_keys.py``), never from a fixed
list. Each model's production and canary versions are warmed, in batches of up to 100
rows that share parameters; the job stops at its time budget and says what it skipped.
Warming writes L2 (Redis), which every instance shares, and this instance's L1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from pydantic import Field

from common.core.errors import InvalidValuesError, ServiceError
from common.core.validation import StrictModel
from common.registry.records import Registry
from common.serving.cache import PredictionCache
from common.serving.hot_keys import HotKeys, HotRow
from common.serving.pipeline import PredictRequest, SnapshotCache
from common.serving.predictor import Predictor


class WarmCacheContext(Protocol):
    """What cache warming reads and fills; the instance's Services is one."""

    @property
    def cache(self) -> PredictionCache | None: ...

    @property
    def hot_keys(self) -> HotKeys: ...

    @property
    def predictor(self) -> Predictor: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def snapshots(self) -> SnapshotCache: ...


log = logging.getLogger("ipo.jobs")

BATCH = 100


class WarmCacheRequest(StrictModel):
    max_rows_per_model: int = Field(200, ge=1, le=5000)
    time_budget_s: float = Field(60.0, gt=0, le=540)


def _groups(rows: list[HotRow]) -> list[tuple[Any, list[Any]]]:
    """Rows batched by equal parameters, at most BATCH per batch."""
    by_parameters: dict[bytes, tuple[Any, list[Any]]] = {}
    for row in rows:
        key = orjson.dumps(row.parameters, option=orjson.OPT_SORT_KEYS)
        by_parameters.setdefault(key, (row.parameters, []))[1].append(row.instance)
    return [
        (parameters, instances[i : i + BATCH])
        for parameters, instances in by_parameters.values()
        for i in range(0, len(instances), BATCH)
    ]


def warm_cache(
    services: WarmCacheContext,
    request: WarmCacheRequest,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    started = clock()
    cache = services.cache
    if cache is None:
        return {"status": "skipped", "reason": "the prediction cache is disabled", "models": {}}
    services.hot_keys.flush()  # this instance's latest counts count too
    models: dict[str, Any] = {}
    out_of_time = False
    for model in services.registry.list_models():
        summary = models[model.model_id] = {"rows": 0, "computed": 0, "cached": 0, "invalid": 0}
        if out_of_time or clock() - started > request.time_budget_s:
            out_of_time, summary["skipped"] = True, "time budget spent"
            continue
        snapshot = services.snapshots.get(model.model_id)
        versions = [r for r in (snapshot.production, snapshot.canary) if r is not None]
        rows = services.hot_keys.top(model.model_id, request.max_rows_per_model) if versions else []
        summary["rows"], summary["versions"] = len(rows), [v.version for v in versions]
        for record in versions:
            for parameters, instances in _groups(rows):
                if clock() - started > request.time_budget_s:
                    out_of_time, summary["skipped"] = True, "time budget spent"
                    break
                _warm(services, record, instances, parameters, summary)
    result = {
        "status": "partial" if out_of_time else "done",
        "models": models,
        "seconds": round(clock() - started, 3),
    }
    log.info("warm_cache finished", extra={"job": "warm_cache", "result": result})
    return result


def _warm(
    services: WarmCacheContext,
    record: Any,
    instances: list[Any],
    parameters: Any,
    summary: dict[str, Any],
) -> None:
    """Warm one batch; a row the version no longer accepts is counted, not fatal."""
    batches = [instances]
    while batches:
        batch = batches.pop()
        request = PredictRequest.model_validate({"instances": batch, "parameters": parameters})
        try:
            _, levels, _ = services.predictor.run_version(record, request)
        except InvalidValuesError:
            if len(batch) == 1:
                summary["invalid"] += 1
            else:
                batches += [[row] for row in batch]
            continue
        except ServiceError as exc:
            summary["error"] = exc.message
            return
        levels = levels or {}
        summary["computed"] += levels.get("miss", 0)
        summary["cached"] += levels.get("l1", 0) + levels.get("l2", 0)
