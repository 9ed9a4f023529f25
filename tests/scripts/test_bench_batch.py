"""scripts/bench.py batch: its rows and one job measured on the test stack."""

from __future__ import annotations

import json

import pytest

from tests.scripts.test_bench import _script_module
from tests.support.fixtures import Stack

bench_batch = _script_module("bench_batch")


def test_one_job_is_run_to_the_end_and_reported(stack: Stack) -> None:
    found = bench_batch.bench_model(stack.services, "risk", 30).report()
    assert (found["model"], found["rows"], found["shards"]) == ("risk", 30, 4)
    assert found["million_rows_function_s"] == pytest.approx(
        1e6 / found["rows_per_s"], rel=0.01, abs=0.1
    )
    table = bench_batch.markdown([found], {"cpu": "cpu", "cores": 2, "python": "3.11"}, 2000)
    assert "| risk | 30 | 4 |" in table


def test_rows_differ_and_stay_inside_the_schema(stack: Stack) -> None:
    record = stack.registry.get_version("risk", "1.0.0")
    lines = bench_batch.rows_of(record.example, dict(record.input_schema), 50)
    rows = [json.loads(line) for line in lines]
    assert len({json.dumps(row, sort_keys=True) for row in rows}) == 50
    assert {tuple(sorted(row)) for row in rows} == {tuple(sorted(record.example))}
