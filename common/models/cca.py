"""Comparable-company analysis: value a company at the multiples its listed peers trade at.

The artifact is a versioned peer set (JSON, never pickle): peers with their sector,
EV/Revenue, EV/EBITDA, P/E and market cap, the weights that blend the three multiples,
and an optional size band. For each instance the peers of its sector (narrowed by size
when the peer set has a band and the instance gives a size hint) are summarised by the
25th, 50th and 75th percentiles of each multiple, computed exactly as
``numpy.percentile``'s default (linear) method does. Each percentile times the company's
own figure gives an implied value; the weights, renormalised over the multiples that
apply to this company, blend them into one value per share.

Every step is elementwise over instances, so a batch gives exactly what its instances
give one by one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from common.core.errors import IntegrityError
from common.core.validation import StrictModel, field_name
from common.models import input_echoes
from common.models.base import ModelRuntime
from common.models.cca_schema import (
    _NOT_APPLICABLE,
    _QUANTILES,
    _SELECTION,
    ARTIFACT_FORMAT,
    MULTIPLES,
    PERCENTILES,
    SECTORS,
    CcaInstance,
    CcaParameters,
    Peer,
    PeerSet,
)


def linear_percentiles(
    sorted_values: np.ndarray, first: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Per row and multiple, the 25/50/75th percentiles of the ``count`` values selected.

    ``sorted_values`` is (M, P), each multiple ascending; ``first`` is (n, M, P): per row
    and multiple, positions into ``sorted_values`` with the selected ones first, in
    ascending order. The arithmetic is numpy's linear method step for step (virtual
    index (count - 1) q, then its two-sided lerp), so each result equals
    ``numpy.percentile`` of the selected values bit for bit. Returns (n, M, 3).
    """
    virtual = (count[:, None, None] - 1) * _QUANTILES
    below = np.floor(virtual)
    gamma = virtual - below
    lower = below.astype(np.intp)
    upper = np.minimum(lower + 1, count[:, None, None] - 1)
    row = np.arange(first.shape[0])[:, None, None]
    multiple = np.arange(first.shape[1])[None, :, None]
    a = sorted_values[multiple, first[row, multiple, lower]]
    b = sorted_values[multiple, first[row, multiple, upper]]
    diff = b - a
    result: np.ndarray = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return result


class SectorPeers:
    """One sector's peers as arrays, ordered by name, each multiple sorted once at load."""

    def __init__(self, peers: Sequence[Peer]) -> None:
        ordered = sorted(peers, key=lambda p: p.name)
        self.listing = tuple(
            {"name": p.name, "market_cap_musd": p.market_cap_musd}
            | {m: getattr(p, m) for m in MULTIPLES}
            for p in ordered
        )
        self.market_cap = np.array([p.market_cap_musd for p in ordered])
        multiples = np.array([[getattr(p, m) for m in MULTIPLES] for p in ordered]).T
        # (M, P): the peers that sort each multiple ascending (ties by name), the sorted
        # values, and each peer's position in that order.
        self.order = np.argsort(multiples, axis=1, kind="stable")
        self.sorted_multiples = np.take_along_axis(multiples, self.order, axis=1)
        self.position = np.argsort(self.order, axis=1)
        self._multiple = np.arange(len(MULTIPLES))[:, None]
        full, centrality = self.summarise(np.ones((1, len(ordered)), dtype=bool))
        self.full_percentiles = full[0]
        """(M, 3): the percentiles of the whole sector, shared by every row that uses it."""
        self.full_centrality = centrality[0]

    def summarise(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Percentiles (n, M, 3) and centrality (n, M, P) of the peers each row selects.

        Centrality is a peer's distance from the median in ranks, |rank - (count - 1) / 2|
        (0 for peers not selected): exact arithmetic, so the peers listed never depend on
        the batch.
        """
        count = mask.sum(axis=1)
        chosen = mask[:, self.order]
        first = np.argsort(~chosen, axis=2, kind="stable")
        percentiles = linear_percentiles(self.sorted_multiples, first, count)
        rank = np.cumsum(chosen, axis=2) - 1
        middle = (count[:, None, None] - 1) / 2.0
        by_value = np.where(chosen, np.abs(rank - middle), 0.0)
        return percentiles, by_value[:, self._multiple, self.position]

    def select(
        self, hints: np.ndarray, factor: float, min_peers: int, eligible: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Peers within ``factor`` of each hint, or the ``min_peers`` nearest in size.

        Returns the (n, P) selection and, per row, 1 (size band) or 2 (nearest by size).
        Ratios, not logarithms, so the comparison is exact. ``eligible`` leaves peers out
        (the builder's leave-one-out uses it).
        """
        ratio = self.market_cap[None, :] / hints[:, None]
        distance = np.maximum(ratio, 1.0 / ratio)
        if eligible is not None:
            distance = np.where(eligible, distance, np.inf)
        in_band = distance <= factor
        enough = in_band.sum(axis=1) >= min_peers
        mask = in_band
        short = ~enough
        if short.any():
            far = distance[short]
            nearest = np.argsort(far, axis=1, kind="stable")[:, :min_peers]
            chosen = np.zeros_like(far, dtype=bool)
            np.put_along_axis(chosen, nearest, True, axis=1)
            mask[short] = chosen & np.isfinite(far)
        return mask, np.where(enough, 1, 2)


class CcaRuntime(ModelRuntime):
    kind: ClassVar[str] = "cca"
    instance_schema: ClassVar[type[StrictModel]] = CcaInstance
    parameters_schema: ClassVar[type[StrictModel]] = CcaParameters
    input_echoes: ClassVar[Mapping[str, tuple[str, ...]]] = input_echoes.CCA

    def __init__(self, peer_set: PeerSet) -> None:
        self.peer_set = peer_set
        self.sectors = {
            s: SectorPeers([p for p in peer_set.peers if p.sector == s]) for s in SECTORS
        }
        w = peer_set.weights
        self._weights = np.array([w.ev_revenue, w.ev_ebitda, w.pe])
        self._factor = peer_set.size_band.factor if peer_set.size_band else None

    @classmethod
    def from_artifact(cls, data: bytes) -> CcaRuntime:
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            raise IntegrityError(f"artifact is not a JSON {ARTIFACT_FORMAT} peer set") from None
        if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
            raise IntegrityError(f"artifact is not a {ARTIFACT_FORMAT} peer set")
        try:
            peer_set = PeerSet.model_validate(payload)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            where = field_name([str(p) if not isinstance(p, int) else p for p in errors[0]["loc"]])
            raise IntegrityError(
                f"invalid {ARTIFACT_FORMAT} peer set ({len(errors)} problem(s)); "
                f"{where}: {errors[0]['msg']}"
            ) from None
        return cls(peer_set)

    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        if not instances:
            return []
        limit = (
            parameters.max_peers_listed
            if parameters is not None
            else CcaParameters().max_peers_listed
        )
        n = len(instances)
        sectors = [x.sector for x in instances]
        figures = np.array([[x.revenue_musd, x.ebitda_musd, x.net_income_musd] for x in instances])
        net_debt = np.array([x.net_debt_musd for x in instances])
        shares = np.array([x.shares_outstanding_m for x in instances])
        hints = np.array(
            [
                np.nan if x.market_cap_hint_musd is None else x.market_cap_hint_musd
                for x in instances
            ]
        )

        applicable = figures > 0
        raw = np.where(applicable, self._weights, 0.0)
        weights = raw / (raw[:, 0] + raw[:, 1] + raw[:, 2])[:, None]

        percentiles = np.empty((n, len(MULTIPLES), len(PERCENTILES)))
        selection = np.zeros(n, dtype=np.intp)
        peer_count = np.zeros(n, dtype=np.intp)
        listed: list[list[int]] = [[] for _ in range(n)]
        for sector in sorted(set(sectors)):
            rows = np.array([i for i, s in enumerate(sectors) if s == sector])
            view = self._view(self.sectors[sector], hints[rows], weights[rows], limit)
            percentiles[rows], selection[rows], peer_count[rows] = view[:3]
            for row, chosen in zip(rows.tolist(), view[3], strict=True):
                listed[row] = chosen

        # P/E implies equity directly; EV multiples imply EV, and equity = EV - net debt.
        values = percentiles * figures[:, :, None]
        debt = net_debt[:, None]
        enterprise = values.copy()
        enterprise[:, 2] = values[:, 2] + debt
        equity = values - debt[:, :, None]
        equity[:, 2] = values[:, 2]
        per_share = equity / shares[:, None, None]
        used = np.where(applicable[:, :, None], equity, 0.0)
        blended_equity = (
            weights[:, 0, None] * used[:, 0]
            + weights[:, 1, None] * used[:, 1]
            + weights[:, 2, None] * used[:, 2]
        )
        blended_per_share = blended_equity / shares[:, None]

        # One flat list of floats per batch: per-row lists would be container objects the
        # garbage collector keeps traversing, a third of the cost of a 1,000-row batch.
        flat = np.concatenate(
            [
                weights,
                percentiles.reshape(n, -1),
                enterprise.reshape(n, -1),
                equity.reshape(n, -1),
                per_share.reshape(n, -1),
                blended_equity,
                blended_per_share,
            ],
            axis=1,
        )
        values_list, ok_list = flat.ravel().tolist(), applicable.ravel().tolist()
        counts, codes = peer_count.tolist(), selection.tolist()
        return [
            _output(
                values_list,
                i * _WIDTH,
                ok_list[3 * i : 3 * i + 3],
                sectors[i],
                _SELECTION[codes[i]],
                counts[i],
                [self.sectors[sectors[i]].listing[j] for j in listed[i]],
            )
            for i in range(n)
        ]

    def _view(
        self, table: SectorPeers, hints: np.ndarray, weights: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[int]]]:
        """One sector's rows: percentiles, selection code, peer count, peers to list.

        Rows without a size hint (or all rows, without a size band) share the sector's
        precomputed summary; the others select their peers by size.
        """
        k, size = len(hints), len(table.listing)
        sized = ~np.isnan(hints) if self._factor is not None else np.zeros(k, dtype=bool)
        selection = np.zeros(k, dtype=np.intp)
        if self._factor is not None and sized.all():
            mask, selection = table.select(hints, self._factor, self.peer_set.min_peers)
            percentiles, centrality = table.summarise(mask)
        else:
            mask = np.ones((k, size), dtype=bool)
            percentiles = np.broadcast_to(
                table.full_percentiles, (k, *table.full_percentiles.shape)
            )
            centrality = np.broadcast_to(table.full_centrality, (k, *table.full_centrality.shape))
            if self._factor is not None and sized.any():
                percentiles, centrality = percentiles.copy(), centrality.copy()
                mask[sized], selection[sized] = table.select(
                    hints[sized], self._factor, self.peer_set.min_peers
                )
                percentiles[sized], centrality[sized] = table.summarise(mask[sized])
        count = mask.sum(axis=1)
        if limit == 0:
            return percentiles, selection, count, [[] for _ in range(k)]
        # The peers that drove the value: nearest the median, weighted as the blend is.
        distance = (
            weights[:, 0, None] * centrality[:, 0]
            + weights[:, 1, None] * centrality[:, 1]
            + weights[:, 2, None] * centrality[:, 2]
        )
        distance = np.where(mask, distance, np.inf)
        nearest = np.argsort(distance, axis=1, kind="stable")[:, :limit]
        listed = [
            row[: min(limit, int(c))]
            for row, c in zip(nearest.tolist(), count.tolist(), strict=True)
        ]
        return percentiles, selection, count, listed


_WEIGHTS, _PCT, _EV, _EQ, _PS, _BLEND_EQ, _BLEND_PS, _WIDTH = 0, 3, 12, 21, 30, 39, 42, 45
"""Offsets of each block in a row of the flat output table (see ``predict``)."""


def _keyed(v: list[float], at: int) -> dict[str, float]:
    return {"p25": v[at], "p50": v[at + 1], "p75": v[at + 2]}


def _output(
    v: list[float],
    row: int,
    applicable: list[bool],
    sector: str,
    selection: str,
    peer_count: int,
    peers: list[dict[str, Any]],
) -> dict[str, Any]:
    """One instance's answer, read from its row (offset ``row``) of the flat table."""
    multiples = {}
    for m, name in enumerate(MULTIPLES):
        ok, at = applicable[m], row + 3 * m
        multiples[name] = {
            "applicable": ok,
            "reason": None if ok else _NOT_APPLICABLE[m],
            "peer_percentiles": _keyed(v, at + _PCT),
            "implied_enterprise_value_musd": _keyed(v, at + _EV) if ok else None,
            "implied_equity_value_musd": _keyed(v, at + _EQ) if ok else None,
            "implied_value_per_share": _keyed(v, at + _PS) if ok else None,
        }
    w = row + _WEIGHTS
    return {
        "value_per_share": v[row + _BLEND_PS + 1],
        "equity_value_musd": v[row + _BLEND_EQ + 1],
        "blended_value_per_share": _keyed(v, row + _BLEND_PS),
        "blended_equity_value_musd": _keyed(v, row + _BLEND_EQ),
        "weights_used": {"ev_revenue": v[w], "ev_ebitda": v[w + 1], "pe": v[w + 2]},
        "multiples": multiples,
        "sector": sector,
        "peer_selection": selection,
        "peer_count": peer_count,
        "peers": [dict(peer) for peer in peers],
    }
