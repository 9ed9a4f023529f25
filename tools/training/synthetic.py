"""A seeded synthetic dataset of companies going public, with a known risk mechanism.

The generating process is documented in docs/models/risk.md ("The synthetic IPO dataset");
keep the two in step. Every draw comes from one ``numpy.random.Generator`` seeded by the
caller, so a seed always gives the same rows; every draw has size ``n`` (one value per
company), since a draw without a size would be one value shared by the whole dataset.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.models.risk import CLASSES, FEATURES, SECTORS

SECTOR_SHARES = np.array([0.35, 0.20, 0.15, 0.15, 0.15])
SECTOR_RISK = np.array([0.20, 0.35, 0.00, 0.10, -0.15])
NOISE_SD = 0.18
CLASS_QUANTILES = (0.35, 0.75)  # below: low; above the second: high


@dataclass(frozen=True)
class RiskDataset:
    X: np.ndarray
    """Rows in ``common.models.risk.FEATURES`` order; column 0 is the sector index."""
    y: np.ndarray
    """Class names from ``CLASSES``."""
    latent: np.ndarray

    def rows(self) -> list[dict[str, object]]:
        out = []
        for row in self.X:
            item: dict[str, object] = {"sector": SECTORS[int(row[0])]}
            item.update({name: float(v) for name, v in zip(FEATURES[1:], row[1:], strict=True)})
            out.append(item)
        return out


def latent_risk(X: np.ndarray) -> np.ndarray:
    """The noiseless risk index the classes are cut from (higher = riskier)."""
    sector = X[:, 0].astype(int)
    revenue, growth, margin, leverage, age, _offering, rank, vix, insiders = X[:, 1:].T
    latent: np.ndarray = (
        1.6 * -margin
        + 0.45 * np.sqrt(leverage)
        - 0.55 * np.log10(1.0 + revenue)
        - 0.025 * np.minimum(age, 40.0)
        + 0.05 * (vix - 18.0)
        - 0.22 * (rank - 6.0)
        + 0.9 * np.maximum(growth - 1.0, 0.0)
        - 0.8 * (insiders - 0.4)
        + SECTOR_RISK[sector]
    )
    return latent


def generate(n: int, seed: int) -> RiskDataset:
    if n < 10:
        raise ValueError("need at least 10 rows")
    rng = np.random.default_rng(seed)
    sector = rng.choice(len(SECTORS), size=n, p=SECTOR_SHARES)
    age = np.clip(rng.gamma(2.0, 6.0, n) + 0.5, 0.0, 120.0)
    revenue = np.clip(rng.lognormal(np.log(150.0) + 0.03 * age, 1.2, n), 0.0, 100_000.0)
    growth = np.clip(rng.normal(0.35 - 0.01 * age + 0.15 * (sector == 0), 0.3, n), -0.8, 5.0)
    margin = np.clip(rng.normal(-0.05 + 0.008 * age, 0.25, n), -3.0, 0.6)
    leverage = np.clip(rng.lognormal(np.log(0.8), 0.8, n) * np.where(sector == 2, 3.0, 1.0), 0, 30)
    offering = np.clip(rng.lognormal(np.log(0.3 * revenue + 50.0), 0.6, n), 1.0, 50_000.0)
    rank = np.clip(rng.normal(6.0 + 0.5 * np.log10(offering), 1.5, n), 0.0, 9.0)
    vix = np.clip(rng.gamma(6.0, 3.0, n), 9.0, 80.0)
    insiders = rng.beta(3.0, 4.0, n)
    X = np.column_stack(
        [sector, revenue, growth, margin, leverage, age, offering, rank, vix, insiders]
    ).astype(np.float64)
    latent = latent_risk(X) + rng.normal(0.0, NOISE_SD, n)
    low_cut, high_cut = np.quantile(latent, CLASS_QUANTILES)
    y = np.where(latent < low_cut, CLASSES[0], np.where(latent > high_cut, CLASSES[2], CLASSES[1]))
    return RiskDataset(X=X, y=y, latent=latent)


def from_csv(path: Path) -> RiskDataset:
    """A user's labelled IPOs: one column per risk feature plus ``risk_class``.

    Every row is checked against the same schema that serving uses, so a model is never
    trained on values it would refuse to score; the error names the line and field.
    """
    from pydantic import ValidationError

    from common.models.risk import RiskInstance

    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        expected = {*FEATURES, "risk_class"}
        if set(reader.fieldnames or ()) != expected:
            raise ValueError(
                f"{path}: columns must be exactly {sorted(expected)}, got {reader.fieldnames}"
            )
        rows, labels = [], []
        for line, raw in enumerate(reader, start=2):
            values: dict[str, object] = {
                k: (v if k == "sector" else _number(v, path, line, k))
                for k, v in raw.items()
                if k != "risk_class"
            }
            try:
                instance = RiskInstance.model_validate(values)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"{path}:{line}: {first['loc'][0]}: {first['msg']}") from None
            if raw["risk_class"] not in CLASSES:
                raise ValueError(f"{path}:{line}: risk_class must be one of {list(CLASSES)}")
            rows.append(instance)
            labels.append(raw["risk_class"])
    if len(rows) < 10:
        raise ValueError(f"{path}: need at least 10 rows, found {len(rows)}")
    from common.models.risk import to_matrix

    X = to_matrix(rows)
    return RiskDataset(X=X, y=np.array(labels), latent=np.full(len(rows), np.nan))


def _number(text: str, path: Path, line: int, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: {field}: {text!r} is not a number") from None
