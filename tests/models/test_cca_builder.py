"""The CCA builder: CSV peer sets checked line by line, a reproducible demo, its evidence."""

from __future__ import annotations

import csv
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from common.models.cca import CcaRuntime
from common.models.cca_schema import MULTIPLES, SECTORS
from tests.support.fixtures import SEED
from tools.training import cca_builder, cca_peers
from tools.training.base import MODEL_CARD_FIELDS, BuiltModel
from tools.training.cca_peers import PeerSetError

ROOT = Path(__file__).resolve().parents[2]
HEADER = "name,sector,ev_revenue,ev_ebitda,pe,market_cap_musd"


@cache
def demo() -> BuiltModel:
    (built,) = cca_builder.build(SEED)
    return built


def write_csv(path: Path, peers: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER.split(","))
        writer.writeheader()
        writer.writerows(peers)
    return path


def good_rows() -> list[dict[str, Any]]:
    return [p.model_dump() for p in cca_peers.synthetic_peers(SEED)]


def test_golden_set_reproduces_through_the_runtime() -> None:
    built = demo()
    runtime = CcaRuntime.from_artifact(built.artifact)
    golden = json.loads(json.dumps(built.golden_set))  # as stored in the registry
    instances = CcaRuntime.instances_adapter().validate_python([g["instance"] for g in golden])
    assert runtime.predict(instances, None) == [g["expected"] for g in golden]
    selections = {g["expected"]["peer_selection"] for g in golden}
    assert selections == {"sector", "size_band", "nearest_by_size"}


def test_demo_is_reproducible_and_documented_as_synthetic() -> None:
    built = demo()
    (again,) = cca_builder.build(SEED)
    assert again.artifact == built.artifact
    assert again.golden_set == built.golden_set
    assert cca_builder.build(SEED + 1)[0].artifact != built.artifact
    peer_set = CcaRuntime.from_artifact(built.artifact).peer_set
    assert "synthetic" in peer_set.source
    assert all(p.name.startswith("Synthetic ") for p in peer_set.peers)
    assert built.tags["peer_set"] == "synthetic"
    assert "Synthetic demo peer set" in built.model_card["training_data"]


def test_evidence_is_complete_and_meaningful() -> None:
    built = demo()
    assert built.model_id == built.kind == "cca"
    assert all(built.model_card[k] for k in MODEL_CARD_FIELDS)
    metrics = built.metrics
    for m in (*MULTIPLES, "blended"):
        assert 0.05 < metrics[f"loo_median_abs_log_error_{m}"] < 0.6
    # Blending multiples that disagree independently beats each one alone.
    assert metrics["loo_median_abs_log_error_blended"] < min(
        metrics[f"loo_median_abs_log_error_{m}"] for m in MULTIPLES
    )
    low, high = cca_peers.PEERS_PER_SECTOR
    assert low <= metrics["peers_per_sector_min"] <= high
    assert 5 * low <= metrics["peers_total"] <= 5 * high
    assert metrics["latency_p95_ms"] > 0
    inputs = {k for k in built.drift_baseline if not k.startswith("prediction.")}
    assert inputs == set(CcaRuntime.input_schema()["properties"])
    assert any(k.startswith("prediction.") for k in built.drift_baseline)
    assert set(built.reports["leave_one_out"]) == set(SECTORS)
    CcaRuntime.instances_adapter().validate_python([built.example])


def test_synthetic_targets_are_valid_and_varied() -> None:
    rows = cca_builder.synthetic_targets(500, SEED)
    CcaRuntime.instances_adapter().validate_python(rows)
    assert {r["sector"] for r in rows} == set(SECTORS)
    assert any(r["ebitda_musd"] <= 0 for r in rows)
    assert any(r["net_income_musd"] <= 0 < r["ebitda_musd"] for r in rows)
    assert any(r["net_debt_musd"] < 0 for r in rows)


def test_csv_peer_set_builds_and_serves(tmp_path: Path) -> None:
    rows = good_rows()
    path = write_csv(tmp_path / "peers.csv", rows)
    assert [p.model_dump() for p in cca_peers.peers_from_csv(path)] == rows
    (built,) = cca_builder.build(SEED, data=path)
    peer_set = CcaRuntime.from_artifact(built.artifact).peer_set
    assert peer_set.source.startswith("CSV peers.csv sha256:")
    assert built.tags["peer_set"] == "csv"
    assert len(peer_set.peers) == len(rows)


def test_csv_sector_case_and_spaces_are_forgiven(tmp_path: Path) -> None:
    rows = good_rows()
    rows[0]["sector"] = " Technology "
    path = write_csv(tmp_path / "peers.csv", rows)
    assert cca_peers.peers_from_csv(path)[0].sector == "technology"


def test_csv_bad_rows_are_refused_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "peers.csv"
    path.write_text(
        f"{HEADER}\n"
        "Alpha,technology,5,18,28,9000\n"  # line 2: fine
        "Beta,energy,5,18,28,9000\n"  # line 3: sector
        "Gamma,retail,1.2,-4,15,800\n"  # line 4: negative EV/EBITDA
        "Delta,retail,1.2,8,abc,800\n"  # line 5: not a number
        "\n"  # line 6: blank, skipped
        "alpha,finance,3,10,13,5000\n"  # line 7: repeats line 2
        "Epsilon,finance,3,10\n"  # line 8: too few fields
        "Zeta,finance,3,10,inf,0\n"  # line 9: two problems
    )
    with pytest.raises(PeerSetError) as caught:
        cca_peers.peers_from_csv(path)
    problems = caught.value.problems
    assert [line for line, _ in problems] == [3, 4, 5, 7, 8, 9, 9]
    text = dict(problems[:5])
    assert "sector 'energy' is not one of technology" in text[3]
    assert "ev_ebitda -4 is not positive" in text[4]
    assert "pe 'abc' is not a number" in text[5]
    assert "repeats line 2" in text[7]
    assert "expected 6 fields, got 4" in text[8]
    assert "line 9: pe 'inf' is not finite" in str(caught.value)
    assert "line 9: market_cap_musd 0 is not positive" in str(caught.value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("name,sector,ev_revenue,ev_ebitda,pe", "missing: market_cap_musd"),
        (f"{HEADER},ticker", "unknown: ticker"),
        (f"{HEADER},pe", "repeated: pe"),
    ],
)
def test_csv_header_is_checked(tmp_path: Path, header: str, expected: str) -> None:
    path = tmp_path / "peers.csv"
    path.write_text(header + "\n")
    with pytest.raises(PeerSetError) as caught:
        cca_peers.peers_from_csv(path)
    ((line, message),) = caught.value.problems
    assert line == 1
    assert expected in message


def test_csv_without_rows_is_refused(tmp_path: Path) -> None:
    for content in ("", HEADER + "\n"):
        path = tmp_path / "peers.csv"
        path.write_text(content)
        with pytest.raises(PeerSetError):
            cca_peers.peers_from_csv(path)


def test_a_sector_short_of_peers_is_refused(tmp_path: Path) -> None:
    rows = [r for r in good_rows() if r["sector"] != "retail"]
    rows += [r for r in good_rows() if r["sector"] == "retail"][:4]
    path = write_csv(tmp_path / "peers.csv", rows)
    with pytest.raises(PeerSetError) as caught:
        cca_peers.peer_set_from_csv(path)
    assert caught.value.problems == [
        (None, "sector retail has 4 peer(s); every sector needs at least 5")
    ]
    assert cca_peers.peer_set_from_csv(path, min_peers=4).min_peers == 4


def test_weights_are_parsed_and_checked() -> None:
    assert cca_builder.parse_weights("ev_revenue=0.5, ev_ebitda=0.5, pe=0") == {
        "ev_revenue": 0.5,
        "ev_ebitda": 0.5,
        "pe": 0.0,
    }
    for bad in ("ev_revenue", "p_e=1", "pe=x"):
        with pytest.raises(ValueError, match="weights"):
            cca_builder.parse_weights(bad)
    with pytest.raises(PeerSetError, match="sum to 1"):
        cca_peers.synthetic_peer_set(SEED, weights={"ev_revenue": 0.5, "ev_ebitda": 0.2, "pe": 0.2})


def test_script_writes_a_servable_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location(
        "build_peer_set", ROOT / "scripts/build_peer_set.py"
    )
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    csv_path = write_csv(tmp_path / "peers.csv", good_rows())
    out = tmp_path / "peer_set.json"
    assert script.main([str(csv_path), "--out", str(out), "--no-size-band"]) == 0
    runtime = CcaRuntime.from_artifact(out.read_bytes())
    assert runtime.peer_set.size_band is None
    assert "wrote" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\nBeta,energy,5,18,28,9000\n")
    assert script.main([str(bad), "--out", str(tmp_path / "x.json")]) == 1
    assert "line 2: sector 'energy'" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
