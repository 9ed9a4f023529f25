"""CCA peer sets: read from the user's peer CSV, or drawn as a seeded synthetic demo set.

The synthetic generator is documented in docs/models/cca.md; keep the two in step.
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

from common.models.cca_schema import (
    ARTIFACT_FORMAT,
    MAX_MULTIPLE,
    MULTIPLES,
    SECTORS,
    Peer,
    PeerSet,
)

CSV_COLUMNS = ("name", "sector", "ev_revenue", "ev_ebitda", "pe", "market_cap_musd")
DEFAULT_WEIGHTS: dict[str, float] = {"ev_revenue": 0.3, "ev_ebitda": 0.4, "pe": 0.3}
DEFAULT_SIZE_FACTOR = 3.0
DEFAULT_MIN_PEERS = 5
MAX_MARKET_CAP_MUSD = 10_000_000.0
MAX_SHOWN_PROBLEMS = 30


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
