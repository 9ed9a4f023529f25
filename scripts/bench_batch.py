"""``scripts/bench.py batch``: batch prediction rows/s on one process, per model.

In a throw-away data folder (the configured data is not touched): risk and DCF are trained
there, ``--rows`` JSONL rows per model are written under ``batch/bench/`` (the version's
example with one float moved a little per row, so no two rows are alike), a job is
submitted with no work done by the submitting call, and one worker (common/batch/runner)
runs it to the end in this process, as a ``run_batch_jobs`` instance does: shards read by
byte range, one vectorised predict per shard, outputs written create-only, each shard
committed in a transaction. Wall time and this process's CPU time are measured apart
for planning (the submitting call) and the run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_http as h

from common.batch.jobs import BatchJobs
from common.batch.runner import Runner
from common.batch.spec import BatchJobRequest
from common.core.config import Settings
from common.security.auth import Principal
from common.services import Services

MODELS = ("risk", "dcf")
FILES = 4
VCPU_S_USD = 0.000024
GIB_S_USD = 0.0000025
"""Cloud Run's (and so Cloud Functions gen2's) list prices per vCPU-second and GiB-second
in tier-1 regions, request-based billing; what one million rows is priced at below."""
WORKER = {"cpu": 2, "memory_gib": 4}
"""run_batch_jobs's size in terraform/function_sizes.tf."""


@dataclass(frozen=True)
class Result:
    model: str
    rows: int
    shards: int
    plan_s: float
    run_s: float
    run_cpu_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.run_s

    def report(self) -> dict[str, Any]:
        million_s = 1_000_000 / self.rows_per_s
        return {
            "model": self.model,
            "rows": self.rows,
            "shards": self.shards,
            "plan_s": round(self.plan_s, 3),
            "run_s": round(self.run_s, 3),
            "run_cpu_s": round(self.run_cpu_s, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "rows_per_min": round(self.rows_per_s * 60),
            "rows_per_cpu_s": round(self.rows / self.run_cpu_s, 1),
            "million_rows_function_s": round(million_s, 1),
            "million_rows_usd": round(
                million_s * (WORKER["cpu"] * VCPU_S_USD + WORKER["memory_gib"] * GIB_S_USD), 4
            ),
        }


def rows_of(example: dict[str, Any], schema: dict[str, Any], n: int) -> list[bytes]:
    """``n`` JSONL lines: the example with its first float moved by a tiny step per row."""
    path = h.first_float_leaf(example)
    if path is None:
        raise ValueError("the example has no float to vary")
    base: Any = example
    for key in path:
        base = base[key]
    step = h.perturbation_step(float(base), h.leaf_schema({"m": schema}, "m", path))
    lines = []
    for i in range(n):
        row: Any = json.loads(json.dumps(example))
        holder = row
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = base + step * (i / n)
        lines.append(json.dumps(row, separators=(",", ":")).encode() + b"\n")
    return lines


def bench_model(services: Services, model: str, rows: int) -> Result:
    registry, artifacts = services.registry, services.backends.artifacts
    record = registry.get_version(model, str(registry.get_model(model).production_version))
    lines = rows_of(record.example, dict(record.input_schema), rows)
    prefix = f"batch/bench/{model}-{time.time_ns()}"
    for part in range(FILES):
        artifacts.put(f"{prefix}/in/part-{part:05d}.jsonl", b"".join(lines[part::FILES]))
    request = BatchJobRequest(
        model=model,
        stage="production",
        input_uri=f"{prefix}/in/",
        output_prefix=f"{prefix}/out/",
    )
    admin = Principal("bench", frozenset({"admin"}))
    started = time.perf_counter()
    job = BatchJobs(services).submit(request, admin)
    plan_s = time.perf_counter() - started
    runner = Runner(services)
    cpu, started = time.process_time(), time.perf_counter()
    runner.work(job["job_id"], budget_s=3600)
    run_s, run_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    done = BatchJobs(services).get(job["job_id"], admin)
    if (done["state"], done["rows_done"], done["errors"]) != ("succeeded", rows, 0):
        raise RuntimeError(f"the {model} job ended {done['state']}: {done['reason']}")
    return Result(model, rows, int(done["shards_total"]), plan_s, run_s, run_cpu_s)


def run_batch(folder: Path, rows: dict[str, int]) -> list[dict[str, Any]]:
    environ = h.environment(folder)
    h.prepare(environ, list(MODELS))
    environ["IPO_BATCH_SUBMIT_BUDGET_S"] = "0"
    settings = Settings.from_environ(environ)
    services = Services.build(settings)
    try:
        return [bench_model(services, model, rows[model]).report() for model in MODELS]
    finally:
        services.close()


def markdown(found: list[dict[str, Any]], about: dict[str, Any], shard_rows: int) -> str:
    lines = [
        f"Batch prediction on one process ({about['cpu']}, {about['cores']} cores, Python "
        f"{about['python']}), shards of {shard_rows} rows, {FILES} input files per job",
        "",
        "| model | rows | shards | planning s | run s | rows/s | rows/min | CPU s | rows/CPU s | "
        "1M rows: function s | 1M rows: USD (2 vCPU, 4 GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in found:
        lines.append(
            f"| {r['model']} | {r['rows']:,} | {r['shards']} | {r['plan_s']:.2f} | "
            f"{r['run_s']:.2f} | {r['rows_per_s']:,.0f} | {r['rows_per_min']:,} | "
            f"{r['run_cpu_s']:.2f} | {r['rows_per_cpu_s']:,.0f} | "
            f"{r['million_rows_function_s']:,.0f} | "
            f"{r['million_rows_usd']:.3f} |"
        )
    return "\n".join(lines) + "\n"
