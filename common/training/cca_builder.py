"""Build the CCA peer set: from the user's peer CSV, or a seeded synthetic demo set.

A CCA model has nothing to fit: its artifact is the peer set itself. What a builder owes
is validation (every peer usable, every sector with enough peers) and evidence: a
leave-one-out test that values each peer from the others, as serving would value a new
company. The generator of the synthetic demo set is documented in docs/models/cca.md;
keep the two in step.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from common.models.cca import (
    ARTIFACT_FORMAT,
    MAX_MULTIPLE,
    MULTIPLES,
    SECTORS,
    CcaRuntime,
    Peer,
    PeerSet,
    to_artifact,
)
from common.training.base import BuiltModel, finish, model_card

CSV_COLUMNS = ("name", "sector", "ev_revenue", "ev_ebitda", "pe", "market_cap_musd")
DEFAULT_WEIGHTS: dict[str, float] = {"ev_revenue": 0.3, "ev_ebitda": 0.4, "pe": 0.3}
DEFAULT_SIZE_FACTOR = 3.0
DEFAULT_MIN_PEERS = 5
MAX_MARKET_CAP_MUSD = 10_000_000.0
MAX_SHOWN_PROBLEMS = 30
TARGETS = 500
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class SectorProfile:
    """Medians of a sector's trailing multiples and of its companies' size and margins."""

    ev_revenue: float
    ev_ebitda: float
    pe: float
    market_cap_musd: float
    ebitda_margin: float


SYNTHETIC_PROFILES: dict[str, SectorProfile] = {
    "technology": SectorProfile(5.0, 18.0, 28.0, 8000.0, 0.22),
    "healthcare": SectorProfile(4.0, 15.0, 24.0, 6000.0, 0.18),
    "finance": SectorProfile(3.0, 10.0, 13.0, 10000.0, 0.30),
    "retail": SectorProfile(0.8, 9.0, 18.0, 4000.0, 0.09),
    "manufacturing": SectorProfile(1.5, 11.0, 17.0, 5000.0, 0.14),
}
MULTIPLE_SIGMA = np.array([0.45, 0.35, 0.40])
"""Log-scale spread of EV/Revenue, EV/EBITDA and P/E within a sector."""
MULTIPLE_CORRELATION = 0.6
"""Loading of every multiple on one per-peer factor: a richly valued peer is rich on all."""
MARKET_CAP_SIGMA = 1.1
PEERS_PER_SECTOR = (30, 60)


class PeerSetError(ValueError):
    """A peer set that cannot be built; ``problems`` are (line or None, message) pairs."""

    def __init__(self, source: str, problems: Sequence[tuple[int | None, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        shown = [
            f"line {line}: {message}" if line is not None else message
            for line, message in self.problems[:MAX_SHOWN_PROBLEMS]
        ]
        if len(self.problems) > MAX_SHOWN_PROBLEMS:
            shown.append(f"... and {len(self.problems) - MAX_SHOWN_PROBLEMS} more")
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n  " + "\n  ".join(shown))


def _number(
    text: str, column: str, *, upper: float, why_positive: str
) -> tuple[float | None, str | None]:
    try:
        value = float(text)
    except ValueError:
        return None, f"{column} {text.strip()!r} is not a number"
    if not math.isfinite(value):
        return None, f"{column} {text.strip()!r} is not finite"
    if value <= 0:
        return None, f"{column} {value:g} is not positive: {why_positive}"
    if value > upper:
        return None, f"{column} {value:g} is above the limit of {upper:g}"
    return value, None


_WHY_POSITIVE = {
    "ev_revenue": "a peer's EV/Revenue must be above 0",
    "ev_ebitda": "a peer with EBITDA of 0 or less has no meaningful EV/EBITDA; leave it out",
    "pe": "a peer with earnings of 0 or less has no meaningful P/E; leave it out",
    "market_cap_musd": "a market cap must be above 0",
}


def peers_from_csv(path: Path) -> list[Peer]:
    """Every row of the user's peer CSV as a Peer; all bad rows reported with line numbers.

    Non-positive multiples are refused, not dropped: a peer whose earnings are negative
    would silently leave some multiples' distributions and not others', so the user
    decides whether to leave that company out.
    """
    source = str(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise PeerSetError(source, [(1, f"empty file; expected a header {CSV_COLUMNS}")])
        columns = [h.strip().lower() for h in header]
        missing = [c for c in CSV_COLUMNS if c not in columns]
        unknown = sorted({c for c in columns if c not in CSV_COLUMNS})
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if missing or unknown or repeated:
            message = f"header must name the columns {', '.join(CSV_COLUMNS)}"
            for what, names in (("missing", missing), ("unknown", unknown), ("repeated", repeated)):
                if names:
                    message += f"; {what}: {', '.join(names)}"
            raise PeerSetError(source, [(1, message)])
        at = {c: columns.index(c) for c in CSV_COLUMNS}
        problems: list[tuple[int, str]] = []
        peers: list[Peer] = []
        first_line: dict[str, int] = {}
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(columns):
                problems.append((line, f"expected {len(columns)} fields, got {len(fields)}"))
                continue
            row_problems: list[str] = []
            name = fields[at["name"]].strip()
            if not name or len(name) > 200:
                row_problems.append("name must be 1 to 200 characters")
            elif name.casefold() in first_line:
                row_problems.append(f"name {name!r} repeats line {first_line[name.casefold()]}")
            else:
                first_line[name.casefold()] = line
            sector = fields[at["sector"]].strip().lower()
            if sector not in SECTORS:
                row_problems.append(
                    f"sector {fields[at['sector']].strip()!r} is not one of {', '.join(SECTORS)}"
                )
            values: dict[str, float] = {}
            for column in (*MULTIPLES, "market_cap_musd"):
                upper = MAX_MARKET_CAP_MUSD if column == "market_cap_musd" else MAX_MULTIPLE
                value, problem = _number(
                    fields[at[column]], column, upper=upper, why_positive=_WHY_POSITIVE[column]
                )
                if problem is not None:
                    row_problems.append(problem)
                elif value is not None:
                    values[column] = value
            if row_problems:
                problems.extend((line, p) for p in row_problems)
                continue
            peers.append(Peer.model_validate({"name": name, "sector": sector, **values}))
    if problems:
        raise PeerSetError(source, problems)
    if not peers:
        raise PeerSetError(source, [(None, "no peers: the file has a header and no rows")])
    return peers


def make_peer_set(
    peers: Sequence[Peer],
    *,
    source: str,
    weights: Mapping[str, float] | None = None,
    size_factor: float | None = DEFAULT_SIZE_FACTOR,
    min_peers: int = DEFAULT_MIN_PEERS,
) -> PeerSet:
    """The artifact's content; refuses a set with a sector short of ``min_peers`` peers."""
    counts = {s: sum(p.sector == s for p in peers) for s in SECTORS}
    short = [
        (None, f"sector {s} has {n} peer(s); every sector needs at least {min_peers}")
        for s, n in counts.items()
        if n < min_peers
    ]
    if short:
        raise PeerSetError(source, short)
    try:
        return PeerSet.model_validate(
            {
                "format": ARTIFACT_FORMAT,
                "source": source,
                "peers": [p.model_dump() for p in peers],
                "weights": dict(weights or DEFAULT_WEIGHTS),
                "size_band": None if size_factor is None else {"factor": size_factor},
                "min_peers": min_peers,
            }
        )
    except ValidationError as exc:
        raise PeerSetError(
            source,
            [
                (None, f"{'.'.join(str(p) for p in e['loc']) or 'peer set'}: {e['msg']}")
                for e in exc.errors(include_url=False)
            ],
        ) from None


def peer_set_from_csv(path: Path, **options: Any) -> PeerSet:
    """The peer set of the user's CSV; its source names the file and its SHA-256."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return make_peer_set(peers_from_csv(path), source=f"CSV {path.name} sha256:{digest}", **options)


def synthetic_peers(seed: int) -> list[Peer]:
    """Fictitious peers: per sector, log-normal multiples around SYNTHETIC_PROFILES medians.

    Log multiple = ln(median) + sigma x (rho x z + sqrt(1 - rho^2) x e), one z per peer;
    log market cap = ln(median cap) + MARKET_CAP_SIGMA x Normal(0, 1).
    """
    rng = np.random.default_rng(seed)
    rho = MULTIPLE_CORRELATION
    peers = []
    for sector in SECTORS:
        profile = SYNTHETIC_PROFILES[sector]
        count = int(rng.integers(PEERS_PER_SECTOR[0], PEERS_PER_SECTOR[1] + 1))
        common = rng.standard_normal((count, 1))
        own = rng.standard_normal((count, len(MULTIPLES)))
        medians = np.log([profile.ev_revenue, profile.ev_ebitda, profile.pe])
        logs = medians + MULTIPLE_SIGMA * (rho * common + math.sqrt(1 - rho**2) * own)
        multiples = np.clip(np.exp(logs), 0.05, MAX_MULTIPLE)
        caps = np.exp(
            np.log(profile.market_cap_musd) + MARKET_CAP_SIGMA * rng.standard_normal(count)
        )
        for i in range(count):
            peers.append(
                Peer.model_validate(
                    {
                        "name": f"Synthetic {sector.capitalize()} Peer {i + 1:02d}",
                        "sector": sector,
                        **{m: round(float(multiples[i, j]), 4) for j, m in enumerate(MULTIPLES)},
                        "market_cap_musd": round(
                            float(np.clip(caps[i], 1.0, MAX_MARKET_CAP_MUSD)), 2
                        ),
                    }
                )
            )
    return peers


def synthetic_peer_set(seed: int, **options: Any) -> PeerSet:
    source = f"synthetic demo peer set (seed {seed}): fictitious companies, not market data"
    return make_peer_set(synthetic_peers(seed), source=source, **options)


def synthetic_targets(n: int, seed: int) -> list[dict[str, Any]]:
    """Companies to value, valid for CcaInstance; some with negative EBITDA or earnings."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for _ in range(n):
        sector = SECTORS[int(rng.integers(len(SECTORS)))]
        profile = SYNTHETIC_PROFILES[sector]
        revenue = float(np.clip(rng.lognormal(math.log(300.0), 1.2), 1.0, 100_000.0))
        ebitda_margin = float(np.clip(rng.normal(profile.ebitda_margin, 0.15), -1.0, 0.6))
        net_margin = ebitda_margin - float(np.clip(rng.normal(0.09, 0.04), 0.0, 0.3))
        size = revenue * profile.ev_revenue * float(rng.lognormal(0.0, 0.5))
        rows.append(
            {
                "sector": sector,
                "revenue_musd": revenue,
                "ebitda_musd": revenue * ebitda_margin,
                "net_income_musd": revenue * net_margin,
                "net_debt_musd": revenue * float(np.clip(rng.normal(0.2, 0.4), -1.0, 2.0)),
                "shares_outstanding_m": float(np.clip(rng.lognormal(math.log(100.0), 0.8), 1, 1e4)),
                "market_cap_hint_musd": float(np.clip(size, 1.0, MAX_MARKET_CAP_MUSD)),
            }
        )
    return rows


def leave_one_out(runtime: CcaRuntime) -> tuple[dict[str, float], dict[str, Any]]:
    """Value every peer from the other peers of its sector, as serving values a company.

    The peer's own market cap is its size hint. Implied over actual value is
    p50(others) / own multiple (EV for EV multiples, market cap for P/E). The blend treats
    EV as market cap, since a peer set carries no net debt.
    """
    peer_set = runtime.peer_set
    weights = np.array([getattr(peer_set.weights, m) for m in MULTIPLES])
    factor = peer_set.size_band.factor if peer_set.size_band else None
    errors: list[np.ndarray] = []
    blended: list[np.ndarray] = []
    per_sector: dict[str, Any] = {}
    for sector in SECTORS:
        table = runtime.sectors[sector]
        size = len(table.listing)
        eligible = ~np.eye(size, dtype=bool)
        if factor is None:
            mask = eligible
        else:
            mask, _ = table.select(table.market_cap, factor, peer_set.min_peers, eligible)
        medians = table.summarise(mask)[0][:, :, 1]
        own = np.array([[peer[m] for m in MULTIPLES] for peer in table.listing])
        log_error = np.abs(np.log(medians / own))
        log_blend = np.abs(np.log((medians / own) @ weights))
        errors.append(log_error)
        blended.append(log_blend)
        per_sector[sector] = {
            "peers": size,
            **{
                f"median_abs_log_error_{m}": round(float(np.median(log_error[:, i])), 6)
                for i, m in enumerate(MULTIPLES)
            },
            "median_abs_log_error_blended": round(float(np.median(log_blend)), 6),
        }
    all_errors, all_blended = np.vstack(errors), np.concatenate(blended)
    metrics = {
        **{
            f"loo_median_abs_log_error_{m}": float(np.median(all_errors[:, i]))
            for i, m in enumerate(MULTIPLES)
        },
        "loo_median_abs_log_error_blended": float(np.median(all_blended)),
        "loo_share_within_25pct_blended": float(np.mean(all_blended <= math.log(1.25))),
    }
    return metrics, per_sector


def summary(peer_set: PeerSet) -> dict[str, Any]:
    """What a reviewer checks first: peers per sector and their median multiples."""
    runtime = CcaRuntime(peer_set)
    return {
        "source": peer_set.source,
        "peers": len(peer_set.peers),
        "weights": peer_set.weights.model_dump(),
        "size_band": peer_set.size_band.model_dump() if peer_set.size_band else None,
        "min_peers": peer_set.min_peers,
        "sectors": {
            s: {
                "peers": len(t.listing),
                "median": {
                    m: round(float(t.full_percentiles[i, 1]), 6) for i, m in enumerate(MULTIPLES)
                },
            }
            for s, t in runtime.sectors.items()
        },
    }


def package(peer_set: PeerSet, *, seed: int, synthetic: bool) -> BuiltModel:
    artifact = to_artifact(peer_set)
    runtime = CcaRuntime.from_artifact(artifact)
    loo, per_sector = leave_one_out(runtime)
    counts = [len(t.listing) for t in runtime.sectors.values()]
    metrics = {
        **loo,
        "peers_total": float(len(peer_set.peers)),
        "peers_per_sector_min": float(min(counts)),
    }
    targets = synthetic_targets(TARGETS, seed + 1)
    held = int(len(targets) * HELD_OUT_SHARE)
    # Every third held-out company omits its size hint, so the golden set covers both paths.
    held_out = [
        {k: v for k, v in row.items() if i % 3 != 1 or k != "market_cap_hint_musd"}
        for i, row in enumerate(targets[:held])
    ]
    data = (
        "Synthetic demo peer set: fictitious companies drawn from a seeded generator "
        f"(seed {seed}, docs/models/cca.md), not market data"
        if synthetic
        else f"Peer set built from the user's {peer_set.source}"
    )
    card = model_card(
        intended_use=(
            "A market-based cross-check of an IPO's value per share from the trailing "
            "multiples of listed peers, for analysts alongside DCF. Not a price "
            "recommendation."
        ),
        training_data=(
            f"{data}: {len(peer_set.peers)} peers, at least {min(counts)} per sector. "
            f"Golden set and drift baseline use {len(targets)} synthetic target companies."
        ),
        limitations=(
            "Trailing multiples only; peers are matched by sector and optionally size, not by "
            "growth or margins. The leave-one-out blend treats peer EV as market cap, since "
            "the peer set carries no net debt. A synthetic peer set says nothing about real "
            "markets."
        ),
    )
    return finish(
        model_id="cca",
        runtime_class=CcaRuntime,
        artifact=artifact,
        description=(
            "Comparable-company analysis: EV/Revenue, EV/EBITDA and P/E at the sector peers' "
            "25th/50th/75th percentiles, blended into a value per share."
        ),
        metrics=metrics,
        card=card,
        training_rows=targets[held:],
        held_out_rows=held_out,
        reports={"peer_set": summary(peer_set), "leave_one_out": per_sector},
        tags={"framework": "numpy", "peer_set": "synthetic" if synthetic else "csv"},
    )


def build(seed: int, data: Path | None = None) -> list[BuiltModel]:
    """The CCA model from the user's peer CSV (``data``), else the synthetic demo set."""
    if data is not None:
        return [package(peer_set_from_csv(data), seed=seed, synthetic=False)]
    return [package(synthetic_peer_set(seed), seed=seed, synthetic=True)]


def parse_weights(text: str) -> dict[str, float]:
    """``ev_revenue=0.3,ev_ebitda=0.4,pe=0.3`` -> a weights mapping (checked by PeerSet)."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in MULTIPLES:
            raise ValueError(
                f"weights: {part.strip()!r} is not name=weight, name one of {', '.join(MULTIPLES)}"
            )
        try:
            weights[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"weights: {value.strip()!r} is not a number") from None
    return weights
