"""Served rows, sampled into hourly drift windows for ``drift_scan``.

Serving hands every answered batch to ``DriftSampler.observe``. Each row is kept with
probability ``rate``; a kept row adds to per-feature tallies for its model, version and
UTC hour: bin counts on the baseline's edges and a bounded uniform sample (Algorithm R)
for numbers, counts per category for categories, the length of a text field for a
``<field>.length`` baseline, and the same numeric tallies for every numeric leaf of the
prediction the baseline describes as ``prediction.<path>``. Every row served, sampled or
not, is counted as ``served``.

Tallies stay in memory and a background thread merges them into the store at most once a
``flush_every_s``, never on the request thread: one small transaction per window, into
``drift_windows/<model>@<version>@<window>@<shard>`` with a shard drawn per flush from
``SHARDS``, so instances flushing the same hour rarely write the same document. A flush the
store refuses keeps its tallies for the next one. A window's ``expire_at`` lets Firestore's
TTL policy delete it once no scan reads it: its hour + the scan's hours + ``EXPIRY_MARGIN``.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

from common import drift
from common.backends.base import EXPIRE_AT, DocumentStore, Transaction, rfc3339
from common.config import Settings
from common.errors import ServiceError
from common.registry import utcnow

log = logging.getLogger("ipo.drift")

COLLECTION = "drift_windows"
SHARDS = 16
MAX_SAMPLE = 500
"""Raw values kept per numeric feature, per window, per instance and per stored shard."""
MAX_CATEGORIES = 200
"""Distinct values counted per categorical feature; the rest count as OTHER."""
OTHER = "(other)"
FLUSH_EVERY_S = 60.0
PREDICTION = "prediction."
LENGTH = ".length"
MAX_PLANS = 256
EDGE_DECIMALS = 9
"""Baseline edges are stored rounded to this many decimals (``common/training/base.py``);
live values are binned and kept at the same precision, so a value equal to an edge falls
in the bin the baseline put it in."""

EXPIRY_MARGIN = timedelta(hours=48)
"""How long a window outlives the drift scan's reach; it covers the compliance scan, which
reads the 24 closed hours before the current one (``compliance.AUDIT_HOURS``)."""
WINDOW_HOURS: int = Settings.model_fields["drift_window_hours"].default

Kind = Literal["numeric", "categorical"]


def window_of(timestamp: float) -> str:
    """The UTC hour a moment falls in: ``YYYY-MM-DDTHH``."""
    return time.strftime("%Y-%m-%dT%H", time.gmtime(timestamp))


def prediction_leaves(prediction: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every finite numeric (not boolean) leaf of a prediction's nested dicts, by dotted
    path; lists are not entered."""
    if not isinstance(prediction, Mapping):
        return
    for key, value in prediction.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from prediction_leaves(value, f"{path}.")
        elif (number := _number(value)) is not None:
            yield path, number


def merge_samples(
    a: Sequence[float],
    n_a: int,
    b: Sequence[float],
    n_b: int,
    rng: random.Random,
    limit: int = MAX_SAMPLE,
) -> list[float]:
    """A uniform sample of at most ``limit`` values from the union of two populations of
    ``n_a`` and ``n_b`` values, given a uniform sample of each: how many come from each
    side is drawn as without replacement from the two populations (hypergeometric)."""
    if len(a) + len(b) <= limit:
        return [*a, *b]
    left_a, left_b, take_a = max(n_a, len(a)), max(n_b, len(b)), 0
    for _ in range(limit):
        if rng.random() * (left_a + left_b) < left_a:
            take_a, left_a = take_a + 1, left_a - 1
        else:
            left_b -= 1
    take_a = min(take_a, len(a))
    take_b = min(limit - take_a, len(b))
    return rng.sample(list(a), take_a) + rng.sample(list(b), take_b)


@dataclass
class FeatureCounts:
    kind: Kind
    counts: list[int] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    sample: list[float] = field(default_factory=list)
    n: int = 0

    def add_number(self, index: int, value: float, rng: random.Random) -> None:
        self.counts[index] += 1
        self.n += 1
        if len(self.sample) < MAX_SAMPLE:
            self.sample.append(value)
        else:
            slot = rng.randrange(self.n)
            if slot < MAX_SAMPLE:
                self.sample[slot] = value

    def add_category(self, value: str) -> None:
        if value not in self.categories and len(self.categories) >= MAX_CATEGORIES:
            value = OTHER
        self.categories[value] = self.categories.get(value, 0) + 1
        self.n += 1

    def absorb(self, other: FeatureCounts, rng: random.Random) -> None:
        """Add ``other``'s tallies to these; ``other`` is left as it was."""
        if len(other.counts) > len(self.counts):
            self.counts += [0] * (len(other.counts) - len(self.counts))
        for index, count in enumerate(other.counts):
            self.counts[index] += count
        for name, count in other.categories.items():
            self.categories[name] = self.categories.get(name, 0) + count
        self.sample = merge_samples(self.sample, self.n, other.sample, other.n, rng)
        self.n += other.n

    def copy(self) -> FeatureCounts:
        return FeatureCounts(
            self.kind, list(self.counts), dict(self.categories), list(self.sample), self.n
        )

    def live(self) -> drift.LiveFeature:
        return drift.LiveFeature(
            kind=self.kind,
            counts=list(self.counts),
            categories=dict(self.categories),
            sample=list(self.sample),
            n=self.n,
        )

    def as_json(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "kind": self.kind,
            "counts": list(self.counts),
            "categories": [{"name": k, "count": v} for k, v in sorted(self.categories.items())],
            "sample": list(self.sample),
            "n": self.n,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureCounts:
        kind: Kind = "categorical" if data.get("kind") == "categorical" else "numeric"
        return cls(
            kind=kind,
            counts=[int(c) for c in data.get("counts", [])],
            categories={str(c["name"]): int(c["count"]) for c in data.get("categories", [])},
            sample=[float(v) for v in data.get("sample", [])],
            n=int(data.get("n", 0)),
        )


@dataclass
class WindowCounts:
    """One model version's tallies over one or more windows: sampled rows (``n``), rows
    served, and per-feature counts."""

    n: int = 0
    served: int = 0
    features: dict[str, FeatureCounts] = field(default_factory=dict)

    def absorb(self, other: WindowCounts, rng: random.Random) -> None:
        self.n += other.n
        self.served += other.served
        for name, counts in other.features.items():
            mine = self.features.get(name)
            if mine is None or mine.kind != counts.kind:
                self.features[name] = counts.copy()
            else:
                mine.absorb(counts, rng)

    def document(self, model_id: str, version: str, window: str, shard: int) -> dict[str, Any]:
        return {
            "model_id": model_id,
            "version": version,
            "window": window,
            "shard": shard,
            "updated_at": utcnow(),
            "n": self.n,
            "served": self.served,
            "features": [c.as_json(name) for name, c in sorted(self.features.items())],
        }

    @classmethod
    def from_document(cls, data: Mapping[str, Any]) -> WindowCounts:
        return cls(
            n=int(data.get("n", 0)),
            served=int(data.get("served", 0)),
            features={str(f["name"]): FeatureCounts.from_json(f) for f in data.get("features", [])},
        )


def window_id(model_id: str, version: str, window: str, shard: int) -> str:
    return f"{model_id}@{version}@{window}@{shard}"


@dataclass(frozen=True)
class _Source:
    """Where one baseline feature's value comes from in a served row."""

    name: str
    kind: Kind
    edges: tuple[float, ...]
    field: str
    length: bool = False
    prediction: bool = False


def plan(baseline: Mapping[str, Any]) -> tuple[_Source, ...]:
    """The baseline's features as sources: an input field, a text field's length, or a
    prediction leaf."""
    sources = []
    for name, spec in baseline.items():
        if not isinstance(spec, Mapping):
            continue
        kind = spec.get("type")
        if kind == "numeric":
            edges = tuple(float(e) for e in spec.get("edges", ()))
            if len(edges) < 2:
                continue
            if name.startswith(PREDICTION):
                sources.append(_Source(name, kind, edges, name[len(PREDICTION) :], prediction=True))
            elif name.endswith(LENGTH):
                sources.append(_Source(name, kind, edges, name[: -len(LENGTH)], length=True))
            else:
                sources.append(_Source(name, kind, edges, name))
        elif kind == "categorical" and not name.startswith(PREDICTION):
            sources.append(_Source(name, kind, (), name))
    return tuple(sources)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class DriftSampler:
    def __init__(
        self,
        documents: DocumentStore,
        *,
        rate: float,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        flush_every_s: float = FLUSH_EVERY_S,
        window_hours: int = WINDOW_HOURS,  # the drift scan's: IPO_DRIFT_WINDOW_HOURS
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"a sample rate is between 0 and 1, got {rate!r}")
        self._documents = documents
        self._keep = timedelta(hours=window_hours) + EXPIRY_MARGIN
        self._rate = rate
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not secrets
        self._flush_every_s = flush_every_s
        self._windows: dict[tuple[str, str, str], WindowCounts] = {}
        self._plans: dict[tuple[str, str], tuple[Mapping[str, Any], tuple[_Source, ...]]] = {}
        self._lock = threading.Lock()
        self._last_flush = clock()
        self._flushing = False

    def _plan(
        self, model_id: str, version: str, baseline: Mapping[str, Any]
    ) -> tuple[_Source, ...]:
        cached = self._plans.get((model_id, version))
        if cached is not None and cached[0] is baseline:
            return cached[1]
        sources = plan(baseline)
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[(model_id, version)] = (baseline, sources)
        return sources

    def observe(
        self,
        model_id: str,
        version: str,
        baseline: Mapping[str, Any],
        instances: Sequence[Mapping[str, Any]],
        predictions: Sequence[Any],
    ) -> None:
        """Count a served batch and sample its rows; never touches the store itself."""
        window = window_of(self._clock())
        with self._lock:
            sources = self._plan(model_id, version, baseline)
            tally = self._windows.setdefault((model_id, version, window), WindowCounts())
            tally.served += len(predictions)
            if self._rate > 0 and sources:
                for instance, prediction in zip(instances, predictions, strict=False):
                    if self._rng.random() < self._rate:
                        tally.n += 1
                        self._add(tally, sources, instance, prediction)
            due = not self._flushing and self._clock() - self._last_flush >= self._flush_every_s
            if due:
                self._flushing = True
        if due:
            threading.Thread(target=self._flush_in_background, name="drift", daemon=True).start()

    def _add(
        self,
        tally: WindowCounts,
        sources: Sequence[_Source],
        instance: Mapping[str, Any],
        prediction: Any,
    ) -> None:
        leaves: dict[str, float] | None = None
        for source in sources:
            if source.prediction:
                if leaves is None:
                    leaves = dict(prediction_leaves(prediction))
                raw: Any = leaves.get(source.field)
            else:
                raw = instance.get(source.field)
            if raw is None:
                continue
            counts = tally.features.get(source.name)
            if counts is None:
                counts = tally.features[source.name] = FeatureCounts(
                    source.kind, [0] * (len(source.edges) + 1) if source.edges else []
                )
            if source.kind == "categorical":
                counts.add_category(str(raw))
                continue
            value = float(len(raw)) if source.length and isinstance(raw, str) else _number(raw)
            if value is not None:
                value = round(value, EDGE_DECIMALS)
                counts.add_number(drift.bin_index(source.edges, value), value, self._rng)

    def _flush_in_background(self) -> None:
        try:
            self.flush()
        except ServiceError as exc:  # kept in memory for the next flush
            log.warning("drift samples not saved: %s", exc.message)
        except Exception:  # a background thread has no caller to tell
            log.exception("drift samples dropped")
        finally:
            with self._lock:
                self._flushing = False

    def flush(self) -> None:
        """Merge this instance's tallies into the store and start afresh; a window the
        store refuses goes back in memory, and the first such error is raised."""
        with self._lock:
            pending, self._windows = self._windows, {}
            self._last_flush = self._clock()
            shard = self._rng.randrange(SHARDS)
        failed: ServiceError | None = None
        for key, tally in pending.items():
            try:
                self._documents.transaction(partial(self._merge, key=key, shard=shard, tally=tally))
            except ServiceError as exc:
                with self._lock:
                    kept = self._windows.setdefault(key, WindowCounts())
                    kept.absorb(tally, self._rng)
                failed = failed or exc
        if failed is not None:
            raise failed

    def _merge(
        self,
        tx: Transaction,
        *,
        key: tuple[str, str, str],
        shard: int,
        tally: WindowCounts,
    ) -> None:
        model_id, version, window = key
        doc_id = window_id(model_id, version, window, shard)
        stored = tx.get(COLLECTION, doc_id)
        merged = WindowCounts.from_document(stored.data) if stored is not None else WindowCounts()
        merged.absorb(tally, random.Random(self._rng.random()))  # noqa: S311 - sampling
        start = datetime.strptime(window, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        expiry = {EXPIRE_AT: rfc3339(start + self._keep)}
        tx.set(COLLECTION, doc_id, {**merged.document(model_id, version, window, shard), **expiry})
