"""Served rows sampled into hourly drift windows, and how the windows reach the store."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from common.backends.base import EXPIRE_AT, DocumentStore, Filter
from common.backends.sqlite_store import SQLiteDocumentStore
from common.core.config import Settings
from common.core.errors import UnavailableError
from common.monitoring.compliance.checks import AUDIT_HOURS
from common.monitoring.sampling import (
    MAX_WINDOWS_HELD,
    SHARDS,
    DriftSampler,
    prediction_leaves,
)
from common.monitoring.windows import (
    COLLECTION,
    MAX_CATEGORIES,
    MAX_CATEGORY_CHARS,
    MAX_SAMPLE,
    WindowCounts,
    merge_samples,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
WINDOW = "2023-11-14T22"


def numeric(edges: list[float]) -> dict[str, Any]:
    bins = len(edges) - 1
    return {"type": "numeric", "edges": edges, "proportions": [1 / bins] * bins, "count": 100}


BASELINE: dict[str, Any] = {
    "x": numeric([0.0, 1.0, 2.0, 3.0]),
    "sector": {"type": "categorical", "frequencies": {"a": 0.5, "b": 0.5}, "count": 100},
    "text.length": numeric([0.0, 5.0, 10.0]),
    "prediction.score": numeric([0.0, 20.0, 100.0]),
    "prediction.monte_carlo.p50": numeric([0.0, 10.0]),
}


def row(x: float, sector: str = "a", text: str = "abc") -> dict[str, Any]:
    return {"x": x, "sector": sector, "text": text}


def answer(score: float) -> dict[str, Any]:
    return {"score": score, "label": "up", "monte_carlo": {"p50": score / 10}, "ok": True}


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible sampling


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FixedShard(random.Random):
    """Always the same shard, so separate flushes land in one document."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        if start == SHARDS and stop is None:
            return 3
        return super().randrange(start, stop, step)


class Recording:
    """A document store that remembers which thread wrote, and can be broken."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = inner
        self.broken = False
        self.writers: list[str] = []

    def transaction(self, fn: Callable[..., Any], **kw: Any) -> Any:
        self.writers.append(threading.current_thread().name)
        if self.broken:
            raise UnavailableError("the store is down")
        return self.inner.transaction(fn, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Recording]:
    documents = SQLiteDocumentStore(tmp_path / "drift.sqlite3", timeout_s=5.0)
    try:
        yield Recording(documents)
    finally:
        documents.close()


def sampler(store: Any, rate: float = 1.0, **kw: Any) -> DriftSampler:
    kw.setdefault("clock", Clock())
    kw.setdefault("rng", seeded(1))
    kw.setdefault("flush_every_s", 1e9)
    return DriftSampler(store, rate=rate, **kw)


def windows(store: Recording) -> dict[str, WindowCounts]:
    return {d.id: WindowCounts.from_document(d.data) for d in store.inner.query(COLLECTION)}


def only(store: Recording) -> WindowCounts:
    (found,) = windows(store).values()
    return found


def test_every_row_at_rate_one_gives_exact_counts(store: Recording) -> None:
    s = sampler(store)
    xs = [-1.0, 0.5, 1.5, 2.5, 3.0, 4.0]
    s.observe(
        "m",
        "1.0.0",
        BASELINE,
        [row(x, "a" if x < 2 else "z", "x" * int(x + 2)) for x in xs],
        [answer(10.0 * x) for x in xs],
    )
    s.flush()
    (doc,) = store.inner.query(COLLECTION)
    assert doc.id.startswith(f"m@1.0.0@{WINDOW}@")
    assert doc.data["shard"] in range(SHARDS)
    assert (doc.data["model_id"], doc.data["version"], doc.data["window"]) == ("m", "1.0.0", WINDOW)
    assert (doc.data["n"], doc.data["served"]) == (6, 6)
    by_name = {f["name"]: f for f in doc.data["features"]}
    assert set(by_name) == set(BASELINE)
    assert by_name["x"]["counts"] == [1, 1, 1, 2, 1]  # below, three bins (last closed), above
    assert sorted(by_name["x"]["sample"]) == xs
    assert by_name["sector"]["categories"] == [{"name": "a", "count": 3}, {"name": "z", "count": 3}]
    assert by_name["sector"]["kind"] == "categorical"
    assert by_name["text.length"]["counts"] == [0, 4, 2, 0]  # lengths 1, 2, 3, 4 | 5, 6
    assert by_name["prediction.score"]["counts"] == [1, 2, 3, 0]  # -10 | 5, 15 | 25, 30, 40
    assert by_name["prediction.monte_carlo.p50"]["n"] == 6


def test_rate_zero_samples_nothing_but_counts_what_was_served(store: Recording) -> None:
    s = sampler(store, rate=0.0)
    s.observe("m", "1.0.0", BASELINE, [row(1.0)] * 40, [answer(1.0)] * 40)
    s.flush()
    counts = only(store)
    assert (counts.n, counts.served, counts.features) == (0, 40, {})


def test_rate_samples_about_that_share_of_rows(store: Recording) -> None:
    s = sampler(store, rate=0.3, rng=seeded(5))
    for _ in range(20):
        s.observe("m", "1.0.0", BASELINE, [row(1.0)] * 100, [answer(1.0)] * 100)
    s.flush()
    counts = only(store)
    assert counts.served == 2000
    assert 0.27 < counts.n / 2000 < 0.33
    assert counts.features["x"].n == counts.n


def test_the_reservoir_is_bounded_and_uniform(store: Recording) -> None:
    s = sampler(store)
    values = [float(i) for i in range(5000)]
    for i in range(0, 5000, 1000):
        chunk = values[i : i + 1000]
        s.observe("m", "1.0.0", BASELINE, [row(x) for x in chunk], [answer(1.0)] * 1000)
    s.flush()
    x = only(store).features["x"]
    assert (x.n, len(x.sample)) == (5000, MAX_SAMPLE)
    assert set(x.sample) <= set(values)
    assert 2000 < sum(x.sample) / len(x.sample) < 3000  # uniform over 0..4999: mean 2500


def test_merged_samples_are_uniform_over_both_sides() -> None:
    rng = seeded(3)
    small = [0.0] * 100  # 100 values seen
    large = [1.0] * 500  # a sample of 4,900 values seen
    shares = [sum(merge_samples(small, 100, large, 4900, rng)) / MAX_SAMPLE for _ in range(50)]
    assert 0.97 < sum(shares) / len(shares) < 0.99  # 98% of the union is on the large side
    assert merge_samples([1.0], 1, [2.0], 1, rng) == [1.0, 2.0]


def test_each_model_version_and_hour_has_its_own_document(store: Recording) -> None:
    clock = Clock()
    s = sampler(store, clock=clock, rng=FixedShard(2))
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.observe("m", "1.1.0", BASELINE, [row(1.0)] * 2, [answer(1.0)] * 2)
    clock.now += 3600
    s.observe("m", "1.0.0", BASELINE, [row(1.0)] * 3, [answer(1.0)] * 3)
    s.flush()
    s.observe("m", "1.0.0", BASELINE, [row(1.0)] * 4, [answer(1.0)] * 4)
    s.flush()  # same shard, same hour: merged into the document the first flush wrote
    assert {k: v.n for k, v in windows(store).items()} == {
        f"m@1.0.0@{WINDOW}@3": 1,
        f"m@1.1.0@{WINDOW}@3": 2,
        "m@1.0.0@2023-11-14T23@3": 7,
    }


def test_two_instances_flushing_one_window_add_up(store: Recording) -> None:
    first, second = (sampler(store, rng=FixedShard(seed)) for seed in (1, 2))
    first.observe("m", "1.0.0", BASELINE, [row(0.5)] * 400, [answer(1.0)] * 400)
    second.observe("m", "1.0.0", BASELINE, [row(2.5)] * 600, [answer(60.0)] * 600)
    first.flush()
    second.flush()
    counts = only(store)
    assert (counts.n, counts.served) == (1000, 1000)
    x = counts.features["x"]
    assert x.counts == [0, 400, 0, 600, 0]
    assert len(x.sample) == MAX_SAMPLE
    assert 150 < x.sample.count(0.5) < 250  # 40% of the rows, so about 40% of the sample
    assert counts.features["prediction.score"].counts == [0, 400, 600, 0]


def test_a_store_failure_keeps_the_counts_for_the_next_flush(store: Recording) -> None:
    s = sampler(store)
    s.observe("m", "1.0.0", BASELINE, [row(0.5)] * 3, [answer(1.0)] * 3)
    store.broken = True
    with pytest.raises(UnavailableError):
        s.flush()
    assert windows(store) == {}
    s.observe("m", "1.0.0", BASELINE, [row(1.5)] * 2, [answer(1.0)] * 2)
    store.broken = False
    s.flush()
    counts = only(store)
    assert (counts.n, counts.served) == (5, 5)
    assert counts.features["x"].counts == [0, 3, 2, 0, 0]


def test_the_request_that_finds_the_minute_elapsed_merges_on_its_own_thread(
    store: Recording,
) -> None:
    clock = Clock()
    s = sampler(store, clock=clock, flush_every_s=60.0)
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.flush_if_due()
    clock.now += 30
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.flush_if_due()
    assert store.writers == []  # observing never writes, nor does a merge before its minute
    assert s.unsaved() == 2
    clock.now += 31
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.flush_if_due()  # returns with the window stored: no thread is left to finish it
    assert only(store).served == 3
    assert store.writers == [threading.current_thread().name]
    assert s.unsaved() == 0


def test_a_failed_merge_keeps_its_rows_for_the_next_minute(store: Recording) -> None:
    clock = Clock()
    s = sampler(store, clock=clock, flush_every_s=60.0)
    store.broken = True
    clock.now += 61
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.flush_if_due()  # the store refuses; the request is not failed for it
    assert store.writers
    assert s.unsaved() == 1
    store.broken = False
    s.flush_if_due()  # the next minute has not come yet
    assert windows(store) == {}
    clock.now += 61
    s.flush_if_due()
    assert only(store).served == 1
    assert s.unsaved() == 0


def test_rows_without_a_feature_and_unknown_shapes_are_skipped(store: Recording) -> None:
    s = sampler(store)
    s.observe(
        "m",
        "1.0.0",
        BASELINE,
        [{"x": None, "sector": True}, {"x": "nope", "text": 3}],
        [{"score": True}, ["not", "a", "dict"]],
    )
    s.flush()
    counts = only(store)
    assert counts.n == 2
    assert counts.features["sector"].categories == {"True": 1}
    assert "x" not in counts.features or counts.features["x"].n == 0
    assert "prediction.score" not in counts.features


def test_prediction_leaves_are_the_numeric_ones_by_dotted_path() -> None:
    leaves = dict(prediction_leaves(answer(30.0) | {"parts": [1, 2], "nan": float("nan")}))
    assert leaves == {"score": 30.0, "monte_carlo.p50": 3.0}


def test_filters_on_model_and_version_find_a_versions_windows(store: Recording) -> None:
    s = sampler(store)
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.observe("other", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.flush()
    found = store.inner.query(
        COLLECTION,
        [
            Filter("model_id", "==", "m"),
            Filter("version", "==", "1.0.0"),
            Filter("window", "in", [WINDOW]),
        ],
    )
    assert [d.data["model_id"] for d in found] == ["m"]


def test_a_window_expires_after_the_drift_scans_hours_and_the_margin(store: Recording) -> None:
    """Hour 2023-11-14T22 + IPO_DRIFT_WINDOW_HOURS (24 by default) + 48 hours; a later
    flush into the same document writes the same time."""
    assert Settings.from_environ({}).drift_window_hours == 24
    s = sampler(store, rng=FixedShard(2))
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.flush()
    s.observe("m", "1.0.0", BASELINE, [row(2.0)], [answer(1.0)])
    s.flush()
    (doc,) = store.inner.query(COLLECTION)
    assert doc.data["n"] == 2
    assert doc.data[EXPIRE_AT] == "2023-11-17T22:00:00.000000Z"
    assert store.inner.query(
        COLLECTION, [Filter(EXPIRE_AT, "<", "2023-11-17T22:00:00.000001Z")]
    ) == [doc]


def test_the_window_hours_setting_moves_the_expiry(store: Recording) -> None:
    s = sampler(store, window_hours=6)
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.flush()
    assert only_document(store)[EXPIRE_AT] == "2023-11-17T04:00:00.000000Z"  # 22 + 6 + 48


@pytest.mark.parametrize("hours", [1, 24, 744])
def test_no_scan_still_reads_a_window_when_it_expires(store: Recording, hours: int) -> None:
    """The drift scan reads a window while its hour is among the last ``hours`` hours,
    the compliance scan while it is among the AUDIT_HOURS closed hours before now's; a
    window outlives both by at least a day."""
    s = sampler(store, window_hours=hours)
    s.observe("m", "1.0.0", BASELINE, [row(1.0)], [answer(1.0)])
    s.flush()
    start = datetime.strptime(WINDOW, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    expire_at = datetime.fromisoformat(only_document(store)[EXPIRE_AT])
    last_drift_read = start + timedelta(hours=hours)
    last_audit_read = start + timedelta(hours=AUDIT_HOURS + 1)
    assert expire_at >= max(last_drift_read, last_audit_read) + timedelta(hours=24)


def only_document(store: Recording) -> dict[str, Any]:
    (doc,) = store.inner.query(COLLECTION)
    return doc.data


def test_held_tallies_stay_bounded_while_the_store_refuses_them(store: Recording) -> None:
    """Distinct and long categories, hour after hour of refused flushes: the categories per
    feature and the windows held stay within their bounds, the newest hours kept."""
    clock = Clock()
    s = sampler(store, clock=clock)
    store.broken = True
    hours = MAX_WINDOWS_HELD + 10
    for hour in range(hours):
        clock.now = T0 + hour * 3600
        for flush in range(3):
            rows = [row(0.5, sector=f"s{hour}-{flush}-{i}") for i in range(MAX_CATEGORIES)]
            rows.append(row(0.5, sector="y" * (MAX_CATEGORY_CHARS + 1)))
            s.observe("m", "1.0.0", BASELINE, rows, [answer(1.0)] * len(rows))
            with pytest.raises(UnavailableError):
                s.flush()
        held = s._windows
        assert len(held) <= MAX_WINDOWS_HELD
        for tally in held.values():
            categories = tally.features["sector"].categories
            assert len(categories) <= MAX_CATEGORIES
            assert max(len(name) for name in categories) <= MAX_CATEGORY_CHARS
    newest = max(key[2] for key in s._windows)
    assert newest == time_window(T0 + (hours - 1) * 3600)
    sector = s._windows[("m", "1.0.0", newest)].features["sector"]
    assert sum(sector.categories.values()) == 3 * (MAX_CATEGORIES + 1)  # folded, not lost


def time_window(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H")
