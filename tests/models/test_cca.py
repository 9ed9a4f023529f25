"""The CCA runtime: numpy's percentiles, hand-checked values, batches equal single rows."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.core.errors import IntegrityError, InvalidValuesError
from common.core.validation import validate
from common.models.base import joblib_dump
from common.models.cca import CcaRuntime, linear_percentiles
from common.models.cca_schema import (
    ARTIFACT_FORMAT,
    MULTIPLES,
    SECTORS,
    CcaInstance,
    CcaParameters,
    PeerSet,
    to_artifact,
)
from tools.training import cca_builder, cca_peers

TECH_MULTIPLES = {
    "ev_revenue": [2.0, 4.0, 6.0, 8.0],
    "ev_ebitda": [10.0, 12.0, 14.0, 20.0],
    "pe": [30.0, 25.0, 20.0, 15.0],
}


def tiny_peer_set(**overrides: Any) -> dict[str, Any]:
    """Four peers per sector; in technology, peer i has the i-th value of each list."""
    peers = []
    for sector in SECTORS:
        for i in range(4):
            peers.append(
                {
                    "name": f"{sector}-{i}",
                    "sector": sector,
                    **{m: TECH_MULTIPLES[m][i] for m in MULTIPLES},
                    "market_cap_musd": 100.0 * 10**i,
                }
            )
    return {
        "format": ARTIFACT_FORMAT,
        "source": "hand-made test peer set",
        "peers": peers,
        "weights": {"ev_revenue": 0.25, "ev_ebitda": 0.25, "pe": 0.5},
        "size_band": None,
        "min_peers": 3,
        **overrides,
    }


def company(**overrides: Any) -> dict[str, Any]:
    return {
        "sector": "technology",
        "revenue_musd": 100.0,
        "ebitda_musd": 20.0,
        "net_income_musd": 10.0,
        "net_debt_musd": 50.0,
        "shares_outstanding_m": 10.0,
        **overrides,
    }


def run(runtime: CcaRuntime, rows: list[dict[str, Any]], **params: Any) -> list[dict[str, Any]]:
    instances = validate(CcaRuntime.instances_adapter(), rows, prefix=("instances",))
    parameters = validate(CcaRuntime.parameters_adapter(), params, prefix=("parameters",))
    return runtime.predict(instances, parameters)


@pytest.fixture(scope="module")
def tiny() -> CcaRuntime:
    return CcaRuntime.from_artifact(json.dumps(tiny_peer_set()).encode())


@pytest.fixture(scope="module")
def demo() -> CcaRuntime:
    return CcaRuntime.from_artifact(to_artifact(cca_peers.synthetic_peer_set(7)))


@pytest.fixture(scope="module")
def targets() -> list[dict[str, Any]]:
    """Synthetic companies; every third without a size hint."""
    rows = cca_builder.synthetic_targets(300, 11)
    return [
        {k: v for k, v in row.items() if i % 3 or k != "market_cap_hint_musd"}
        for i, row in enumerate(rows)
    ]


def test_implied_values_by_hand(tiny: CcaRuntime) -> None:
    (out,) = run(tiny, [company()])
    m = out["multiples"]
    # Four peers: virtual index 3q, so p25 = v0 + 0.75 (v1 - v0), p50 = midpoint of v1, v2.
    assert m["ev_revenue"]["peer_percentiles"] == {"p25": 3.5, "p50": 5.0, "p75": 6.5}
    assert m["ev_ebitda"]["peer_percentiles"] == {"p25": 11.5, "p50": 13.0, "p75": 15.5}
    assert m["pe"]["peer_percentiles"] == {"p25": 18.75, "p50": 22.5, "p75": 26.25}
    # EV multiples imply EV; equity = EV - net debt (50); per share over 10 m shares.
    assert m["ev_revenue"]["implied_enterprise_value_musd"] == {"p25": 350, "p50": 500, "p75": 650}
    assert m["ev_revenue"]["implied_equity_value_musd"] == {"p25": 300, "p50": 450, "p75": 600}
    assert m["ev_revenue"]["implied_value_per_share"] == {"p25": 30, "p50": 45, "p75": 60}
    assert m["ev_ebitda"]["implied_value_per_share"] == {"p25": 18, "p50": 21, "p75": 26}
    # P/E implies equity directly; its EV adds the net debt back.
    assert m["pe"]["implied_equity_value_musd"] == {"p25": 187.5, "p50": 225, "p75": 262.5}
    assert m["pe"]["implied_enterprise_value_musd"] == {"p25": 237.5, "p50": 275, "p75": 312.5}
    # Blend 0.25 / 0.25 / 0.5 of equity: p50 = 112.5 + 52.5 + 112.5.
    assert out["weights_used"] == {"ev_revenue": 0.25, "ev_ebitda": 0.25, "pe": 0.5}
    assert out["blended_equity_value_musd"] == {"p25": 213.75, "p50": 277.5, "p75": 346.25}
    assert out["blended_value_per_share"] == {"p25": 21.375, "p50": 27.75, "p75": 34.625}
    assert out["equity_value_musd"] == 277.5
    assert out["value_per_share"] == 27.75
    assert out["peer_selection"] == "sector"
    assert out["peer_count"] == 4


def test_non_applicable_multiples_renormalise_weights(tiny: CcaRuntime) -> None:
    no_ebitda, no_earnings, neither = run(
        tiny,
        [
            company(ebitda_musd=-5.0),
            company(net_income_musd=0.0),
            company(ebitda_musd=-5.0, net_income_musd=-1.0),
        ],
    )
    ebitda = no_ebitda["multiples"]["ev_ebitda"]
    assert ebitda["applicable"] is False
    assert ebitda["reason"] == "ebitda_musd is not positive"
    assert ebitda["implied_enterprise_value_musd"] is None
    assert ebitda["implied_value_per_share"] is None
    assert ebitda["peer_percentiles"]["p50"] == 13.0  # the peers still say what they trade at
    assert no_ebitda["weights_used"] == pytest.approx(
        {"ev_revenue": 1 / 3, "ev_ebitda": 0, "pe": 2 / 3}
    )
    assert no_ebitda["equity_value_musd"] == pytest.approx(450 / 3 + 2 * 225 / 3)
    assert no_earnings["multiples"]["pe"]["applicable"] is False
    assert no_earnings["weights_used"] == {"ev_revenue": 0.5, "ev_ebitda": 0.5, "pe": 0.0}
    assert no_earnings["equity_value_musd"] == pytest.approx((450 + 210) / 2)
    assert neither["weights_used"] == {"ev_revenue": 1.0, "ev_ebitda": 0.0, "pe": 0.0}
    assert neither["value_per_share"] == 45.0


def test_equity_can_be_negative_when_debt_exceeds_value(tiny: CcaRuntime) -> None:
    """Implied equity is reported as computed, not floored: the multiples do not cover the debt."""
    (out,) = run(tiny, [company(net_debt_musd=1000.0, net_income_musd=-1.0)])
    assert out["equity_value_musd"] == pytest.approx((-500 * 0.25 - 740 * 0.25) / 0.5)
    assert out["value_per_share"] < 0


def test_peers_listed_are_nearest_the_median(tiny: CcaRuntime) -> None:
    (out,) = run(tiny, [company(ebitda_musd=-1.0, net_income_musd=-1.0)], max_peers_listed=2)
    # EV/Revenue alone: peers 1 and 2 sit half a rank from the median of four.
    assert [p["name"] for p in out["peers"]] == ["technology-1", "technology-2"]
    assert out["peers"][0] == {
        "name": "technology-1",
        "market_cap_musd": 1000.0,
        "ev_revenue": 4.0,
        "ev_ebitda": 12.0,
        "pe": 25.0,
    }
    (none,) = run(tiny, [company()], max_peers_listed=0)
    assert none["peers"] == []
    (many,) = run(tiny, [company()], max_peers_listed=50)
    assert len(many["peers"]) == many["peer_count"] == 4


def test_size_hint_selects_peers_of_similar_size(tiny: CcaRuntime) -> None:
    """Market caps are 100, 1,000, 10,000 and 100,000; min_peers is 3."""
    banded = CcaRuntime.from_artifact(json.dumps(tiny_peer_set(size_band={"factor": 100})).encode())
    in_band, nearest, whole = run(
        banded,
        [
            company(market_cap_hint_musd=300.0),  # 100, 1,000 and 10,000 are within 100x
            company(market_cap_hint_musd=1e7),  # only 100,000 is: take the 3 nearest
            company(),
        ],
    )
    assert (in_band["peer_selection"], in_band["peer_count"]) == ("size_band", 3)
    assert in_band["multiples"]["ev_revenue"]["peer_percentiles"]["p50"] == 4.0
    assert (nearest["peer_selection"], nearest["peer_count"]) == ("nearest_by_size", 3)
    assert nearest["multiples"]["ev_revenue"]["peer_percentiles"]["p50"] == 6.0
    assert {p["name"] for p in nearest["peers"]} == {f"technology-{i}" for i in (1, 2, 3)}
    assert (whole["peer_selection"], whole["peer_count"]) == ("sector", 4)
    # Without a size band in the peer set, a hint changes nothing.
    (unbanded,) = run(tiny, [company(market_cap_hint_musd=300.0)])
    assert unbanded == run(tiny, [company()])[0]


def test_sector_percentiles_equal_numpys(demo: CcaRuntime) -> None:
    outputs = run(demo, [company(sector=s) for s in SECTORS])
    for sector, out in zip(SECTORS, outputs, strict=True):
        peers = [p for p in demo.peer_set.peers if p.sector == sector]
        assert out["peer_count"] == len(peers)
        for m in MULTIPLES:
            expected = np.percentile([getattr(p, m) for p in peers], [25, 50, 75]).tolist()
            got = out["multiples"][m]["peer_percentiles"]
            assert [got["p25"], got["p50"], got["p75"]] == expected  # exactly


def selected_by_size(runtime: CcaRuntime, sector: str, hint: float) -> list[Any]:
    """The size-band rule, written out plainly: within the factor, else the nearest."""
    peers = sorted((p for p in runtime.peer_set.peers if p.sector == sector), key=lambda p: p.name)
    assert runtime.peer_set.size_band is not None
    factor = runtime.peer_set.size_band.factor

    def distance(p: Any) -> float:
        return float(max(p.market_cap_musd / hint, hint / p.market_cap_musd))

    band = [p for p in peers if distance(p) <= factor]
    if len(band) >= runtime.peer_set.min_peers:
        return band
    return sorted(peers, key=distance)[: runtime.peer_set.min_peers]


def test_size_band_percentiles_equal_numpys(
    demo: CcaRuntime, targets: list[dict[str, Any]]
) -> None:
    sized = [t for t in targets if "market_cap_hint_musd" in t][:120]
    seen = set()
    for row, out in zip(sized, run(demo, sized), strict=True):
        peers = selected_by_size(demo, row["sector"], row["market_cap_hint_musd"])
        assert out["peer_count"] == len(peers)
        seen.add(out["peer_selection"])
        for m in MULTIPLES:
            expected = np.percentile([getattr(p, m) for p in peers], [25, 50, 75]).tolist()
            got = out["multiples"][m]["peer_percentiles"]
            assert [got["p25"], got["p50"], got["p75"]] == expected
        names = {p.name for p in peers}
        assert {p["name"] for p in out["peers"]} <= names
    assert seen == {"size_band", "nearest_by_size"}


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=0.01, max_value=1000, allow_nan=False), min_size=1, max_size=40
    ),
    data=st.data(),
)
def test_linear_percentiles_equal_numpys(values: list[float], data: st.DataObject) -> None:
    keep = data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    keep[data.draw(st.integers(0, len(values) - 1))] = True
    sorted_values = np.sort(np.array(values))[None, :]
    chosen = np.array(keep)[np.argsort(values, kind="stable")][None, None, :]
    first = np.argsort(~chosen, axis=2, kind="stable")
    got = linear_percentiles(sorted_values, first, chosen.sum(axis=2)[:, 0])
    selected = [v for v, k in zip(values, keep, strict=True) if k]
    assert got[0, 0].tolist() == np.percentile(selected, [25, 50, 75]).tolist()


def test_batch_equals_one_by_one(demo: CcaRuntime, targets: list[dict[str, Any]]) -> None:
    batch = run(demo, targets, max_peers_listed=7)
    assert batch == [run(demo, [row], max_peers_listed=7)[0] for row in targets]
    shuffled = list(reversed(targets))
    assert run(demo, shuffled, max_peers_listed=7) == list(reversed(batch))


def test_outputs_are_consistent(demo: CcaRuntime, targets: list[dict[str, Any]]) -> None:
    outputs = run(demo, targets)
    assert {o["peer_selection"] for o in outputs} == {"sector", "size_band", "nearest_by_size"}
    for row, out in zip(targets, outputs, strict=True):
        blend = out["blended_value_per_share"]
        assert blend["p25"] <= blend["p50"] <= blend["p75"]
        assert out["value_per_share"] == blend["p50"]
        assert out["equity_value_musd"] == out["blended_equity_value_musd"]["p50"]
        assert out["value_per_share"] == out["equity_value_musd"] / row["shares_outstanding_m"]
        assert sum(out["weights_used"].values()) == pytest.approx(1.0)
        assert out["multiples"]["ev_ebitda"]["applicable"] == (row["ebitda_musd"] > 0)
        assert out["multiples"]["pe"]["applicable"] == (row["net_income_musd"] > 0)
        assert out["peer_count"] >= demo.peer_set.min_peers
        assert len(out["peers"]) == 5
        assert json.loads(json.dumps(out)) == out


def test_empty_batch(demo: CcaRuntime) -> None:
    assert demo.predict([], CcaParameters()) == []
    assert len(demo.predict([CcaInstance.model_validate(company())], None)) == 1


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("sector", "energy", "literal_error"),
        ("revenue_musd", 0.0, "greater_than"),
        ("revenue_musd", "100", "float_type"),
        ("ebitda_musd", -2e6, "greater_than_equal"),
        ("net_debt_musd", math.nan, "finite_number"),
        ("shares_outstanding_m", 0, "greater_than"),
        ("market_cap_hint_musd", -1.0, "greater_than"),
        ("ticker", "ACME", "extra_forbidden"),
    ],
)
def test_bad_instances_name_field_value_and_rule(field: str, value: Any, rule: str) -> None:
    rows = [company(), company(**{field: value})]
    with pytest.raises(InvalidValuesError) as caught:
        validate(CcaRuntime.instances_adapter(), rows, prefix=("instances",))
    (problem,) = caught.value.details
    assert problem["field"] == f"instances[1].{field}"
    assert problem["rule"] == rule
    assert problem["value"] == ("NaN" if isinstance(value, float) and value != value else value)
    assert caught.value.status == 422


def test_missing_field_and_bad_parameters() -> None:
    row = company()
    del row["shares_outstanding_m"]
    with pytest.raises(InvalidValuesError) as caught:
        validate(CcaRuntime.instances_adapter(), [row], prefix=("instances",))
    assert caught.value.details[0]["field"] == "instances[0].shares_outstanding_m"
    assert caught.value.details[0]["rule"] == "missing"
    for bad, rule in ((51, "less_than_equal"), (-1, "greater_than_equal"), (2.0, "int_type")):
        with pytest.raises(InvalidValuesError) as caught:
            validate(
                CcaRuntime.parameters_adapter(), {"max_peers_listed": bad}, prefix=("parameters",)
            )
        assert caught.value.details[0]["field"] == "parameters.max_peers_listed"
        assert caught.value.details[0]["rule"] == rule
    with pytest.raises(InvalidValuesError):
        validate(CcaRuntime.parameters_adapter(), {"percentiles": [10, 90]})


def test_input_schema_documents_units_and_ranges() -> None:
    schema = CcaRuntime.input_schema()
    props = schema["properties"]
    assert props["sector"]["enum"] == list(SECTORS)
    assert props["revenue_musd"]["exclusiveMinimum"] == 0
    assert "USD m" in props["revenue_musd"]["description"]
    assert set(schema["required"]) == set(company())
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    "artifact",
    [
        joblib_dump({"format": ARTIFACT_FORMAT}),
        b"not json at all",
        b"\xff\xfe\x00",
        json.dumps({"format": "ipo-risk/1"}).encode(),
        json.dumps([1, 2, 3]).encode(),
        json.dumps(tiny_peer_set(min_peers=5)).encode(),
        json.dumps(
            tiny_peer_set(weights={"ev_revenue": 0.5, "ev_ebitda": 0.4, "pe": 0.3})
        ).encode(),
        json.dumps(
            tiny_peer_set(weights={"ev_revenue": 0.0, "ev_ebitda": 0.5, "pe": 0.5})
        ).encode(),
        json.dumps(tiny_peer_set(unexpected=True)).encode(),
        json.dumps(tiny_peer_set(size_band={"factor": 1.0})).encode(),
        json.dumps(tiny_peer_set()).replace("30.0", "NaN").encode(),
        json.dumps(tiny_peer_set()).replace("30.0", "-30.0").encode(),
        json.dumps(tiny_peer_set()).replace("healthcare-1", "healthcare-0").encode(),
        json.dumps(tiny_peer_set()).replace('"retail"', '"energy"').encode(),
    ],
)
def test_foreign_or_invalid_artifacts_are_refused(artifact: bytes) -> None:
    with pytest.raises(IntegrityError):
        CcaRuntime.from_artifact(artifact)


def test_artifact_round_trips() -> None:
    peer_set = PeerSet.model_validate(tiny_peer_set(size_band={"factor": 2.5}))
    runtime = CcaRuntime.from_artifact(to_artifact(peer_set))
    assert runtime.peer_set == peer_set
    assert to_artifact(runtime.peer_set) == to_artifact(peer_set)
