"""``scripts/bench.py explain``: the in-process time of an explanation per instance, for
every model in production, as ``POST /v1/explain/<model>`` computes it (common/explain:
the version's baseline, the default or given paths, every path step of the batch in one
evaluation). Predictions are not included: they cost what ``bench.py models`` reports.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from common.backends import build_backends
from common.core.config import Settings
from common.explain.engine import explain
from common.registry.records import Registry
from common.serving.pipeline import SnapshotCache, resolve_component
from common.serving.pool import ModelPool

Prepare = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def bench_explain(
    settings: Settings, *, paths: int, batch: int, repeats: int, prepare: Prepare
) -> list[dict[str, Any]]:
    """Per model: ms per instance (median of ``repeats`` explanations of ``batch`` golden
    inputs, after one warm-up) and the features an instance was explained over."""
    backends = build_backends(settings)
    registry = Registry(backends.documents, backends.artifacts)
    pool = ModelPool(registry, size=16)
    snapshots = SnapshotCache(registry, ttl_s=3600)
    rows = []
    for model in registry.list_models():
        record = snapshots.get(model.model_id).production
        if record is None:
            continue
        runtime = pool.get(record).runtime
        components = {
            role: resolve_component(model_id, snapshots, pool)
            for role, model_id in runtime.components().items()
        }
        inputs = prepare([g["instance"] for g in record.golden_set] or [record.example])
        instances = [inputs[i % len(inputs)] for i in range(batch)]

        run = partial(
            explain,
            runtime,
            instances,
            record.explanation_baseline,
            paths=paths,
            seed=0,
            components=components,
        )
        found = run()
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            samples.append((time.perf_counter() - started) * 1000.0 / batch)
        features = [len(a[0].feature_attributions) for a in found.attributions]
        rows.append(
            {
                "model": model.model_id,
                "version": record.version,
                "method": found.method,
                "paths": paths if found.method == "sampled_shapley" else None,
                "batch": batch,
                "features_mean": round(statistics.mean(features), 1),
                "ms_per_instance": round(statistics.median(samples), 3),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], about: dict[str, Any]) -> str:
    lines = [
        f"Explanations in process on {about['cpu']} ({about['cores']} cores), Python "
        f"{about['python']}; median per instance:",
        "",
        "| model | version | method | paths | batch | features | ms/instance |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paths = r["paths"] if r["paths"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['version']} | {r['method']} | {paths} | {r['batch']} | "
            f"{r['features_mean']} | {r['ms_per_instance']:.3f} |"
        )
    return "\n".join(lines) + "\n"
