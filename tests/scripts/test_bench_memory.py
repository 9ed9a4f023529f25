"""bench.py memory's report: the samples it shows and the growth it states."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

from tests.conftest import ROOT


def _script_module(name: str) -> ModuleType:
    if name not in sys.modules:
        sys.path.insert(0, str(ROOT / "scripts"))
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


memory = _script_module("bench_memory")


def sample(minute: float, total: float) -> dict[str, Any]:
    return {
        "minute": minute,
        "requests": int(minute * 1000),
        "errors": 0,
        "rss_mb": [total / 2, total / 2],
        "rss_total_mb": total,
        "l1_entries": 100_000.0,
        "l1_bytes": 64.0 * 2**20,
        "rows_computed": minute * 10_000,
    }


def test_growth_is_measured_over_the_last_half_per_10_minutes() -> None:
    rising = [sample(m, 200 + 40 * min(m, 5)) for m in range(21)]  # fills, then flat
    assert memory.growth_mb_per_10_min(rising) == 0.0
    leaking = [sample(m, 200 + 3 * m) for m in range(21)]
    assert memory.growth_mb_per_10_min(leaking) == 30.0
    assert memory.growth_mb_per_10_min([sample(0, 100)]) == 0.0


def test_the_report_shows_spaced_samples_and_the_last() -> None:
    report = {
        "date": "2026-12-06T07:40:00+00:00",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "python": "3.11.7", "system": "Linux"},
        "generator": "wrk",
        "concurrency": 4,
        "rows_per_request": 10,
        "load_average_1min": {"start": 1.0, "end": 2.0},
        "samples": [sample(m / 2, 300) for m in range(51)],
    }
    table = memory.markdown(report, rows=5)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "minute" not in line]
    assert rows[0].startswith("| 0.0 |")
    assert rows[-1].startswith("| 25.0 |")
    assert len(rows) <= 7
    assert "+0.0 MB per 10 minutes" in table
