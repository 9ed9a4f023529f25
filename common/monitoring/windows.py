"""The drift tallies of one model version for one UTC hour, as memory and the store hold
them: bin counts and a bounded uniform sample per numeric feature, counts per category,
and how many rows were served and sampled. ``drift_sampling`` fills them on the serving
path; ``drift_scan`` merges the stored shards and compares them with the baseline.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from common.monitoring import drift
from common.registry.records import utcnow

COLLECTION = "drift_windows"
MAX_SAMPLE = 500
"""Raw values kept per numeric feature, per window, per instance and per stored shard."""
MAX_CATEGORIES = 200
"""Distinct values counted per categorical feature; the rest count as OTHER."""
MAX_CATEGORY_CHARS = 200
"""A longer value counts as OTHER: no category a baseline names is that long, and held
values stay small however long what clients send."""
OTHER = "(other)"

Kind = Literal["numeric", "categorical"]


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
        if len(value) > MAX_CATEGORY_CHARS or (
            value not in self.categories and len(self.categories) >= MAX_CATEGORIES
        ):
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

    def fold_categories(self, limit: int = MAX_CATEGORIES) -> None:
        """Keep the ``limit`` most counted categories; the others' counts go to OTHER."""
        if len(self.categories) <= limit:
            return
        ranked = sorted(self.categories.items(), key=lambda item: item[1], reverse=True)
        kept = dict(ranked[: limit - 1])
        kept[OTHER] = kept.get(OTHER, 0) + sum(count for _, count in ranked[limit - 1 :])
        self.categories = kept

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
