"""The in-process floor: time per instance of every model in production, as serving
computes it (``scripts/bench.py models``, and the floor under ``bench.py http``).

Each model is timed at batch 1 and batch 100: the batch validated against the model's
schema, then one vectorised predict, components included for the ensemble. Inputs are the
version's golden set; texts are grown to 2 KB, the size the sentiment target names.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from common.backends import build_backends
from common.core.config import Settings
from common.models.base import predict_rows
from common.registry.records import Registry
from common.serving.pipeline import SnapshotCache, resolve_component
from common.serving.pool import ModelPool

BATCHES = (1, 100)


TEXT_BYTES = 2048


def sized_texts(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Texts grown to 2 KB (the size the sentiment target names) from the golden texts."""
    if not inputs or "text" not in inputs[0]:
        return inputs
    pool = " ".join(str(i["text"]) for i in inputs)
    out = []
    for i, item in enumerate(inputs):
        text = ""
        start = (i * 97) % max(len(pool), 1)
        while len(text.encode()) < TEXT_BYTES:
            text += pool[start:] + " " + pool[:start]
        out.append({**item, "text": text.encode()[:TEXT_BYTES].decode(errors="ignore")})
    return out


def _per_instance_ms(call: Any, batch: int, repeats: int) -> float:
    call()  # warm: first-call costs are cold start, measured elsewhere
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000.0 / batch)
    return statistics.median(samples)


def bench_models(
    settings: Settings, repeats: int, batches: tuple[int, ...] = BATCHES
) -> list[dict[str, Any]]:
    backends = build_backends(settings)
    registry = Registry(backends.documents, backends.artifacts)
    pool = ModelPool(registry, size=16)
    snapshots = SnapshotCache(registry, ttl_s=3600)
    rows = []
    try:
        for model in registry.list_models():
            record = snapshots.get(model.model_id).production
            if record is None:
                continue
            runtime = pool.get(record).runtime
            components = {
                role: resolve_component(model_id, snapshots, pool)
                for role, model_id in runtime.components().items()
            } or None
            inputs = sized_texts([g["instance"] for g in record.golden_set] or [record.example])
            row: dict[str, Any] = {"model": model.model_id, "version": record.version}
            for batch in batches:
                instances = [inputs[i % len(inputs)] for i in range(batch)]
                row[f"batch_{batch}_ms_per_instance"] = round(
                    _per_instance_ms(
                        lambda r=runtime, b=instances, c=components: predict_rows(r, b, c),
                        batch,
                        repeats,
                    ),
                    4,
                )
                if components:  # the same inputs through each component on its own
                    row[f"batch_{batch}_parts_ms_per_instance"] = round(
                        sum(
                            _per_instance_ms(
                                lambda r=c.runtime, b=[x[role] for x in instances]: predict_rows(
                                    r, b
                                ),
                                batch,
                                repeats,
                            )
                            for role, c in components.items()
                        ),
                        4,
                    )
            rows.append(row)
    finally:
        backends.close()
    return rows


def markdown(rows: list[dict[str, Any]], about: dict[str, Any]) -> str:
    lines = [
        f"In-process time per instance (median of runs), {about['cpu']}, "
        f"{about['cores']} cores, Python {about['python']}.",
        "",
        "| model | version | batch 1 (ms/instance) | batch 100 (ms/instance) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['model']} | {row['version']} | {_cell(row, 1)} | {_cell(row, 100)} |")
    if any("batch_1_parts_ms_per_instance" in row for row in rows):
        lines += [
            "",
            "A composite's parts, in brackets, are its components run on the same inputs.",
        ]
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any], batch: int) -> str:
    cell = f"{row[f'batch_{batch}_ms_per_instance']:.3f}"
    parts = row.get(f"batch_{batch}_parts_ms_per_instance")
    return cell if parts is None else f"{cell} (parts {parts:.3f})"
