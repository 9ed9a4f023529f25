"""The DCF builder: a complete version whose golden set reproduces, from synthetic or CSV data."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from common.backends._support import check_document
from common.core.errors import InvalidValuesError
from common.models.dcf import DcfRuntime
from common.models.dcf_math import standard_normals
from tests.support.fixtures import SEED
from tools.training import dcf_builder
from tools.training.base import MODEL_CARD_FIELDS, BuiltModel


@pytest.fixture(scope="module")
def built() -> BuiltModel:
    (model,) = dcf_builder.build(SEED)
    return model


def test_builds_a_complete_version(built: BuiltModel) -> None:
    assert built.model_id == "dcf"
    assert built.kind == "dcf"
    assert all(str(built.model_card[k]).strip() for k in MODEL_CARD_FIELDS)
    assert built.metrics["npv_max_rel_error"] <= 1e-9
    assert built.metrics["batch_matches_single"] == 1.0
    assert built.metrics["mc_reproducible"] == 1.0
    assert built.metrics["mc_point_inside_p5_p95"] >= 0.95
    assert built.metrics["latency_p95_ms"] > 0
    report = built.reports["promotion"]
    assert report["passed"] is True
    assert set(report["checks"]) == set(dcf_builder.CHECKS)
    assert built.promote is True
    assert built.reports["assumption_set"] == json.loads(built.artifact)
    assert len(built.golden_set) == 20
    # The drift baseline covers every input of the canonical request.
    assert {"revenue_musd", "operating_margin", "wacc", "terminal_growth"} <= set(
        built.drift_baseline
    )
    DcfRuntime.instances_adapter().validate_python([built.example])
    check_document(  # what the registry stores must fit Firestore as well as SQLite
        {
            "golden_set": built.golden_set,
            "reports": built.reports,
            "drift_baseline": built.drift_baseline,
            "metrics": built.metrics,
        }
    )


def test_golden_set_reproduces_exactly_from_the_artifact(built: BuiltModel) -> None:
    golden = json.loads(json.dumps(built.golden_set))  # as stored in the registry
    standard_normals.cache_clear()
    runtime = DcfRuntime.from_artifact(built.artifact)
    instances = runtime.instances_adapter().validate_python([g["instance"] for g in golden])
    outputs = runtime.predict(instances, runtime.parameters_adapter().validate_python({}))
    assert outputs == [g["expected"] for g in golden]
    styles = {
        (
            "growth_rates" in g["instance"],
            "wacc" in g["instance"],
            g["instance"].get("terminal_method", "gordon"),
        )
        for g in golden
    }
    assert len(styles) == 4  # the golden set exercises every request style


def test_artifact_is_canonical_per_seed() -> None:
    assert dcf_builder.artifact(SEED) == dcf_builder.artifact(SEED)
    assert dcf_builder.artifact(SEED) != dcf_builder.artifact(SEED + 1)
    assert json.loads(dcf_builder.artifact(SEED))["monte_carlo"]["seed"] == SEED


def test_synthetic_companies_are_seeded_and_valid() -> None:
    companies = dcf_builder.synthetic_companies(200, SEED)
    assert companies == dcf_builder.synthetic_companies(200, SEED)
    assert companies != dcf_builder.synthetic_companies(200, SEED + 1)
    rows = [dcf_builder.styled_row(c, i) for i, c in enumerate(companies)]
    DcfRuntime.instances_adapter().validate_python(rows)


def cell(value: Any) -> Any:
    """How a spreadsheet would hold the value: rates joined by ';', booleans as words."""
    if isinstance(value, list):
        return ";".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return value


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = sorted({k for row in rows for k in row})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: cell(v) for k, v in row.items()} for row in rows)


def test_builds_from_a_csv_of_companies(tmp_path: Path) -> None:
    companies = dcf_builder.synthetic_companies(12, SEED)
    rows = [dcf_builder.styled_row(c, i) for i, c in enumerate(companies)]
    path = tmp_path / "companies.csv"
    write_csv(path, rows)
    assert dcf_builder.read_companies(path) == rows  # empty cells are left out
    (model,) = dcf_builder.build(SEED, data=path)
    assert model.promote is True
    assert len(model.golden_set) == 3  # a quarter held out
    assert "companies.csv" in model.model_card["training_data"]


def test_a_bad_csv_cell_names_the_row_and_field(tmp_path: Path) -> None:
    rows = [dcf_builder.canonical_row(c) for c in dcf_builder.synthetic_companies(3, SEED)]
    rows[2]["wacc"] = "ten percent"
    path = tmp_path / "bad.csv"
    write_csv(path, rows)
    with pytest.raises(InvalidValuesError) as caught:
        dcf_builder.build(SEED, data=path)
    (detail,) = caught.value.details
    assert detail["field"] == "rows[2].wacc"
    assert detail["value"] == "ten percent"
