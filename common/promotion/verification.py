"""Verify a candidate before any traffic reaches it: load, golden set, latency.

The candidate is loaded exactly as serving loads it (artifact fetched, SHA-256 checked,
deserialised), its golden set is run and every output compared with the recorded one
within a tolerance, and its single-instance latency p95 is measured on this instance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from common.models.base import Component, ModelRuntime, predict_rows

REL_TOLERANCE = 1e-6
ABS_TOLERANCE = 1e-9
LATENCY_RUNS = 50
MAX_REPORTED = 5


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two outputs differ; numbers within tolerance count as equal."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return [] if expected is actual else [f"{path or '(root)'}: {expected!r} != {actual!r}"]
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        close = math.isclose(expected, actual, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)
        return [] if close else [f"{path or '(root)'}: expected {expected!r}, got {actual!r}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        if set(expected) != set(actual):
            return [f"{path or '(root)'}: fields {sorted(expected)} != {sorted(actual)}"]
        return [d for k in expected for d in differences(expected[k], actual[k], f"{path}.{k}")]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path or '(root)'}: {len(expected)} items expected, got {len(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path or '(root)'}: {expected!r} != {actual!r}"]


def verify(
    runtime: ModelRuntime,
    golden_set: list[dict[str, Any]],
    *,
    components: Mapping[str, Component] | None = None,
    latency_budget_ms: float | None = None,
) -> dict[str, Any]:
    """A verification report; ``passed`` is false on any mismatch or a latency overrun."""
    problems: list[str] = []
    if not golden_set:
        problems.append("the version has no golden set to verify against")
        mismatches: list[str] = []
    else:
        outputs = predict_rows(runtime, [case["instance"] for case in golden_set], components)
        mismatches = [
            f"case {i}{d}"
            for i, (case, out) in enumerate(zip(golden_set, outputs, strict=True))
            for d in differences(case["expected"], out)
        ]
        if mismatches:
            problems.append(f"{len(mismatches)} golden-set output(s) differ")
    example = golden_set[0]["instance"] if golden_set else None
    p95 = None
    if example is not None:
        timings = []
        for _ in range(LATENCY_RUNS):
            started = time.perf_counter()
            predict_rows(runtime, [example], components)
            timings.append((time.perf_counter() - started) * 1000.0)
        p95 = round(float(np.percentile(timings, 95)), 4)
        if latency_budget_ms is not None and p95 > latency_budget_ms:
            problems.append(f"latency p95 {p95} ms exceeds {latency_budget_ms} ms")
    return {
        "passed": not problems,
        "problems": problems,
        "golden_cases": len(golden_set),
        "golden_mismatches": mismatches[:MAX_REPORTED],
        "latency_p95_ms": p95,
    }
