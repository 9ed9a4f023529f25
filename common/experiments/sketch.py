"""Mergeable aggregates of an experiment metric: moments and a quantile sketch.

Outcomes arrive days after exposure and are written into sharded documents, so no raw
values are ever kept: each shard holds these aggregates, and shards merge in any order to
the same result. ``to_dict`` output is Firestore-safe (maps of str to numbers, no arrays).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ALPHA = 0.01
"""Relative accuracy of sketch quantiles: within 1% of the true order statistic."""
DEFAULT_MAX_BINS = 2048
"""Bin-index span kept per sign: at alpha 0.01 it covers magnitudes over a factor ~1e17."""


@dataclass
class Moments:
    """Count, mean and sum of squared deviations (M2) of a stream of values.

    Welford's update and Chan et al.'s pairwise merge avoid the cancellation that ruins
    the textbook ``sum(x^2) - n*mean^2`` when the mean is large next to the spread.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    def merge(self, other: Moments) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / n
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.count = n

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1); NaN below two values, where it is undefined."""
        if self.count < 2:
            return math.nan
        return max(self.m2, 0.0) / (self.count - 1)

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    def to_dict(self) -> dict[str, int | float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Moments:
        count = int(data["count"])
        mean, m2 = float(data["mean"]), float(data["m2"])
        if count < 0 or not math.isfinite(mean) or not math.isfinite(m2) or m2 < 0:
            raise ValueError(f"invalid moments: {data!r}")
        return cls(count=count, mean=mean, m2=m2)


def _fold(bins: dict[int, int], max_bins: int) -> None:
    """Fold every bin below ``top - max_bins + 1`` into that index, in place.

    The floor only rises as the top index rises, and folding is idempotent, so merging
    shards in any order and folding gives the same bins as folding their union once.
    """
    if not bins:
        return
    floor = max(bins) - max_bins + 1
    low = [i for i in bins if i < floor]
    if low:
        bins[floor] = bins.get(floor, 0) + sum(bins.pop(i) for i in low)


@dataclass
class QuantileSketch:
    """DDSketch: log-spaced bins giving quantiles within relative error ``alpha``.

    A value x > 0 goes to bin ``ceil(log_gamma(x))`` with ``gamma = (1+alpha)/(1-alpha)``;
    the bin's representative ``2 gamma^i / (gamma + 1)`` is within ``alpha`` of every value
    in it. Negative values use a mirror store of ``|x|``; zeros (and subnormals, whose
    logarithm is unreliable) are counted apart. ``quantile(q)`` estimates the order
    statistic of rank ``floor(q (n - 1))`` (numpy's ``method="lower"``) to within
    ``alpha`` relatively, for any q whose bin has not been folded: each store keeps at most
    ``max_bins`` bins, folding the smallest magnitudes into one bin when exceeded, so the
    guarantee is kept for the tails (p95, p99) that the sketch is for.
    """

    alpha: float = DEFAULT_ALPHA
    max_bins: int = DEFAULT_MAX_BINS
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)
    zero_count: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.max_bins < 1:
            raise ValueError(f"max_bins must be at least 1, got {self.max_bins}")

    @property
    def gamma(self) -> float:
        return (1.0 + self.alpha) / (1.0 - self.alpha)

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.positive.values()) + sum(self.negative.values())

    def _index(self, magnitude: float) -> int:
        return math.ceil(math.log(magnitude) / math.log(self.gamma))

    def _value(self, index: int) -> float:
        gamma = self.gamma
        return 2.0 * math.exp(index * math.log(gamma)) / (gamma + 1.0)

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        if abs(value) < sys.float_info.min:
            self.zero_count += 1
            return
        store = self.positive if value > 0 else self.negative
        index = self._index(abs(value))
        store[index] = store.get(index, 0) + 1
        _fold(store, self.max_bins)

    def merge(self, other: QuantileSketch) -> None:
        if other.alpha != self.alpha or other.max_bins != self.max_bins:
            raise ValueError("cannot merge sketches with different alpha or max_bins")
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for index, n in theirs.items():
                mine[index] = mine.get(index, 0) + n
            _fold(mine, self.max_bins)
        self.zero_count += other.zero_count

    def quantile(self, q: float) -> float:
        """The value at rank ``floor(q (n - 1))`` within relative error ``alpha``."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        total = self.count
        if total == 0:
            raise ValueError("quantile of an empty sketch")
        rank = math.floor(q * (total - 1))
        seen = 0
        for index in sorted(self.negative, reverse=True):
            seen += self.negative[index]
            if seen > rank:
                return -self._value(index)
        seen += self.zero_count
        if seen > rank:
            return 0.0
        for index in sorted(self.positive):
            seen += self.positive[index]
            if seen > rank:
                return self._value(index)
        raise AssertionError("unreachable: rank is below the total count")

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "max_bins": self.max_bins,
            "zero_count": self.zero_count,
            "positive": {str(i): n for i, n in sorted(self.positive.items())},
            "negative": {str(i): n for i, n in sorted(self.negative.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        sketch = cls(alpha=float(data["alpha"]), max_bins=int(data["max_bins"]))
        sketch.zero_count = int(data["zero_count"])
        for name, store in (("positive", sketch.positive), ("negative", sketch.negative)):
            for key, n in dict(data.get(name) or {}).items():
                if int(n) < 0:
                    raise ValueError(f"negative bin count in {name}[{key}]")
                if int(n):
                    store[int(key)] = int(n)
            _fold(store, sketch.max_bins)
        if sketch.zero_count < 0:
            raise ValueError("negative zero_count")
        return sketch


@dataclass
class ArmAggregate:
    """One arm's aggregate for one metric: moments, plus a sketch for continuous metrics.

    A binary metric records 0/1 outcomes in the same moments: its mean is the success rate.
    """

    moments: Moments = field(default_factory=Moments)
    sketch: QuantileSketch | None = None

    @classmethod
    def continuous(cls, alpha: float = DEFAULT_ALPHA) -> ArmAggregate:
        return cls(sketch=QuantileSketch(alpha=alpha))

    @classmethod
    def binary(cls) -> ArmAggregate:
        return cls()

    @property
    def count(self) -> int:
        return self.moments.count

    def add(self, value: float) -> None:
        if self.sketch is None and value not in (0, 1):
            raise ValueError(f"a binary metric's outcome must be 0 or 1, got {value!r}")
        self.moments.add(float(value))
        if self.sketch is not None:
            self.sketch.add(float(value))

    def merge(self, other: ArmAggregate) -> None:
        if (self.sketch is None) != (other.sketch is None):
            raise ValueError("cannot merge a binary aggregate with a continuous one")
        self.moments.merge(other.moments)
        if self.sketch is not None and other.sketch is not None:
            self.sketch.merge(other.sketch)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"moments": self.moments.to_dict()}
        if self.sketch is not None:
            out["sketch"] = self.sketch.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmAggregate:
        sketch = data.get("sketch")
        return cls(
            moments=Moments.from_dict(data["moments"]),
            sketch=QuantileSketch.from_dict(sketch) if sketch is not None else None,
        )


@dataclass
class UserSums:
    """One arm's user-level sums for one metric: the delta method's sufficient statistics.

    A user's outcomes total ``Y`` over ``N`` outcomes; the arm keeps the number of users
    with an outcome and ``sum Y, sum N, sum Y^2, sum N^2, sum Y N`` over them. An outcome
    ``y`` of a user who had ``(Y, N)`` before adds ``y, 1, 2 Y y + y^2, 2 N + 1,
    Y + y N + y``: deltas, so shards merge by addition in any order.
    """

    users: int = 0
    sy: float = 0.0
    sn: float = 0.0
    syy: float = 0.0
    snn: float = 0.0
    syn: float = 0.0

    def add(self, user_total: float, user_count: int, value: float) -> None:
        """Fold one outcome ``value`` of a user whose earlier outcomes total ``user_total``
        over ``user_count`` outcomes."""
        if not math.isfinite(value) or not math.isfinite(user_total) or user_count < 0:
            raise ValueError(f"invalid outcome {value!r} for a user at {user_total!r}")
        if user_count == 0:
            self.users += 1
        self.sy += value
        self.sn += 1.0
        self.syy += 2.0 * user_total * value + value * value
        self.snn += 2.0 * user_count + 1.0
        self.syn += user_total + value * user_count + value

    def merge(self, other: UserSums) -> None:
        self.users += other.users
        self.sy += other.sy
        self.sn += other.sn
        self.syy += other.syy
        self.snn += other.snn
        self.syn += other.syn

    def to_dict(self) -> dict[str, int | float]:
        return {
            "users": self.users,
            "sy": self.sy,
            "sn": self.sn,
            "syy": self.syy,
            "snn": self.snn,
            "syn": self.syn,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserSums:
        sums = cls(
            users=int(data["users"]),
            **{k: float(data[k]) for k in ("sy", "sn", "syy", "snn", "syn")},
        )
        values = (sums.sy, sums.sn, sums.syy, sums.snn, sums.syn)
        if sums.users < 0 or sums.sn < 0 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"invalid user sums: {data!r}")
        return sums


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MAX_BINS",
    "ArmAggregate",
    "Moments",
    "QuantileSketch",
    "UserSums",
]
