"""scripts/bench.py audit: both write paths measured, and on Firestore the round trips
that tell them apart."""

from __future__ import annotations

import argparse

import pytest

from tests.scripts.test_bench import _script_module
from tests.support.services import FirestoreEmulator

bench_audit = _script_module("bench_audit")
ABOUT = {"cpu": "cpu", "cores": 2, "python": "3.11"}


def _args(**overrides: object) -> argparse.Namespace:
    values = {"appends": 3, "rounds": 2, "firestore": None, "out": None, **overrides}
    return argparse.Namespace(**values)


def test_the_embedded_store_is_measured_on_both_paths() -> None:
    table, report = bench_audit.run(_args(), ABOUT)
    (store,) = report["stores"]
    assert store["store"] == "embedded SQLite"
    assert [row["write"] for row in store["rows"]] == ["set_many", "transaction"]
    for row in store["rows"]:
        assert row["appends"] == 6
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["round_trips_per_append"] is None
    assert "| embedded SQLite | set_many | 6 |" in table


@pytest.mark.firestore
def test_on_firestore_set_many_is_one_round_trip_and_a_transaction_two(
    firestore_emulator: FirestoreEmulator,
) -> None:
    _, report = bench_audit.run(_args(firestore=firestore_emulator.host), ABOUT)
    rows = {row["write"]: row for row in report["stores"][1]["rows"]}
    assert rows["set_many"]["round_trips_per_append"] == 1.0
    assert rows["transaction"]["round_trips_per_append"] == 2.0


def test_nothing_to_measure_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        bench_audit.run(_args(appends=0), ABOUT)
