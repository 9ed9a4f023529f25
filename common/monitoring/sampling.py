"""Served rows, sampled into hourly drift windows for ``drift_scan``.

Serving hands every answered batch to ``DriftSampler.observe``. Each row is kept with
probability ``rate``; a kept row adds to per-feature tallies for its model, version and
UTC hour: bin counts on the baseline's edges and a bounded uniform sample (Algorithm R)
for numbers, counts per category for categories, the length of a text field for a
``<field>.length`` baseline, and the same numeric tallies for every numeric leaf of the
prediction the baseline describes as ``prediction.<path>``. Every row served, sampled or
not, is counted as ``served``.

Tallies stay in memory and are merged into the store at most once a ``flush_every_s``, by
the request that finds the interval elapsed (``flush_if_due``), never by a thread after a
response, when Cloud Functions gives the instance no CPU: one small transaction per window,
into
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from common.backends.base import EXPIRE_AT, DocumentStore, Transaction, rfc3339
from common.core.config import Settings
from common.core.errors import ServiceError
from common.core.periodic import Interval
from common.monitoring import drift
from common.monitoring.windows import COLLECTION, FeatureCounts, Kind, WindowCounts, window_id

log = logging.getLogger("ipo.drift")

SHARDS = 16
FLUSH_EVERY_S = 60.0
PREDICTION = "prediction."
LENGTH = ".length"
MAX_PLANS = 256
MAX_WINDOWS_HELD = 48
"""Windows (model, version, hour) held in memory; reached only when the store refuses
flushes for hours, and then the oldest are forgotten: they are statistics, and an
outage must not grow the instance without end."""
EDGE_DECIMALS = 9
"""Baseline edges are stored rounded to this many decimals (``tools/training/base.py``);
live values are binned and kept at the same precision, so a value equal to an edge falls
in the bin the baseline put it in."""

EXPIRY_MARGIN = timedelta(hours=48)
"""How long a window outlives the drift scan's reach; it covers the compliance scan, which
reads the 24 closed hours before the current one (``compliance.AUDIT_HOURS``)."""
WINDOW_HOURS: int = Settings.model_fields["drift_window_hours"].default


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
        self._windows: dict[tuple[str, str, str], WindowCounts] = {}
        self._plans: dict[tuple[str, str], tuple[Mapping[str, Any], tuple[_Source, ...]]] = {}
        self._lock = threading.Lock()
        self._interval = Interval(flush_every_s, clock)
        self._flush_lock = threading.Lock()
        self._writing: dict[tuple[str, str, str], WindowCounts] = {}
        """The tallies a flush is writing now; in neither the store nor ``_windows`` yet."""

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

    def flush_if_due(self) -> None:
        """Merge on the calling request when the interval has elapsed and no other request
        is merging; a store fault keeps the tallies for the next interval."""
        self._interval.run_if_due(self.flush, log, "drift samples")

    def unsaved(self) -> int:
        """Served rows counted here and not yet merged into the store."""
        with self._lock:
            held = [*self._windows.values(), *self._writing.values()]
            return sum(tally.served for tally in held)

    def flush(self) -> None:
        """Merge this instance's tallies into the store and start afresh; a window the
        store refuses goes back in memory, and the first such error is raised."""
        with self._flush_lock:  # one flush at a time: a request's and the exit's
            with self._lock:
                pending, self._windows = self._windows, {}
                self._writing = pending
                self._interval.restart()
                shard = self._rng.randrange(SHARDS)
            failed: ServiceError | None = None
            for key, tally in list(pending.items()):
                try:
                    self._documents.transaction(
                        partial(self._merge, key=key, shard=shard, tally=tally)
                    )
                    with self._lock:
                        pending.pop(key)
                except ServiceError as exc:
                    with self._lock:
                        kept = self._windows.setdefault(key, WindowCounts())
                        kept.absorb(tally, self._rng)
                        for counts in kept.features.values():
                            counts.fold_categories()
                        pending.pop(key)
                        self._forget_oldest()
                    failed = failed or exc
            if failed is not None:
                raise failed

    def _forget_oldest(self) -> None:
        """Drop the oldest hours past ``MAX_WINDOWS_HELD`` (the lock held)."""
        excess = len(self._windows) - MAX_WINDOWS_HELD
        if excess > 0:
            for key in sorted(self._windows, key=lambda k: k[2])[:excess]:
                dropped = self._windows.pop(key)
                log.warning(
                    "drift tallies forgotten: the store refused them for too long",
                    extra={
                        "model_id": key[0],
                        "version": key[1],
                        "window": key[2],
                        "served": dropped.served,
                    },
                )

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
