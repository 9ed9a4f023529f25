"""The drift_scan job over served traffic: quiet on rows like the training data, and naming
the one input that moved when it moves."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from common.models.risk import FEATURES
from common.monitoring.drift_scan import REPORTS, DriftScanRequest, drift_scan
from common.services import reset_services, use_services
from tests.conftest import function_client
from tests.support.fixtures import SEED, Stack, embedded_stack, register_risk
from tools.training import synthetic

SHIFTED = "market_volatility"


@pytest.fixture
def drift_stack(tmp_path: Path) -> Iterator[Stack]:
    """The risk model in production, every served row sampled."""
    built = embedded_stack(tmp_path, IPO_DRIFT_SAMPLE_RATE="1")
    register_risk(built.lifecycle)
    use_services(built.services)
    try:
        yield built
    finally:
        reset_services()


def training_like(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """New rows from the population the model was trained on: the generator with a seed
    other than the training one."""
    assert seed != SEED
    return synthetic.generate(max(n, 10), seed).rows()[:n]


def serve(stack: Stack, rows: list[dict[str, Any]]) -> None:
    client = function_client("predict_risk")
    for i in range(0, len(rows), 100):
        response = client.post(
            "/v1/predict/risk", json={"instances": rows[i : i + 100]}, headers=stack.headers()
        )
        assert response.status_code == 200, response.get_data(as_text=True)


def scan(stack: Stack, **body: Any) -> dict[str, Any]:
    stack.services.drift_sampler.flush()
    response = function_client("drift_scan").post(
        "/v1/jobs/drift-scan", json=body, headers=stack.headers(("job:drift-scan:run",))
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    return result


def inputs(names: list[str]) -> list[str]:
    return [name for name in names if not name.startswith("prediction.")]


def test_versions_carry_a_baseline_of_their_predictions(drift_stack: Stack) -> None:
    baseline = drift_stack.registry.get_version("risk", "1.0.0").drift_baseline
    assert set(inputs(list(baseline))) == set(FEATURES)
    assert {
        "prediction.risk_score",
        "prediction.probabilities.low",
        "prediction.probabilities.high",
    } <= set(baseline)
    assert baseline["prediction.risk_score"]["type"] == "numeric"


def test_rows_like_the_training_data_raise_nothing(drift_stack: Stack) -> None:
    serve(drift_stack, training_like(400))
    result = scan(drift_stack)
    assert result["status"] == "done"
    risk = result["models"]["risk"]
    assert (risk["version"], risk["rows"], risk["served"]) == ("1.0.0", 400, 400)
    assert risk["drifting"] == []
    assert risk["prediction_drift_score"] is not None
    assert risk["prediction_drift_score"] <= 0.1
    assert risk["flagged"] is False
    report = drift_stack.services.backends.documents.get(REPORTS, risk["report_id"])
    assert report is not None
    assert report.data["flagged"] is False
    assert {f["feature"] for f in report.data["features"]} == set(
        drift_stack.registry.get_version("risk", "1.0.0").drift_baseline
    )
    assert all(f["status"] == "ok" for f in report.data["features"])


def test_one_shifted_input_is_named_and_the_predictions_flagged(drift_stack: Stack) -> None:
    baseline = drift_stack.registry.get_version("risk", "1.0.0").drift_baseline[SHIFTED]
    shift = 2 * baseline["std"]
    rows = [{**r, SHIFTED: min(float(r[SHIFTED]) + shift, 150.0)} for r in training_like(400)]
    serve(drift_stack, rows)
    jobs = logging.getLogger("ipo.jobs")
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    jobs.addHandler(handler)
    try:
        risk = scan(drift_stack)["models"]["risk"]
    finally:
        jobs.removeHandler(handler)
    assert inputs(risk["drifting"]) == [SHIFTED]
    assert risk["flagged"] is True
    assert risk["prediction_drift_score"] > 0.1
    (line,) = [r for r in lines if getattr(r, "job", None) == "drift_scan"]
    assert line.levelno == logging.WARNING
    assert line.__dict__["model_id"] == "risk"
    assert line.__dict__["prediction_drift_score"] == risk["prediction_drift_score"]
    assert line.__dict__["flagged"] is True
    assert SHIFTED in line.__dict__["drifting"]
    report = drift_stack.services.backends.documents.get(REPORTS, risk["report_id"])
    assert report is not None
    assert report.data["drifting"] == risk["drifting"]
    assert report.data["prediction_drift_score"] == risk["prediction_drift_score"]


def test_too_few_rows_are_insufficient_data_and_never_flagged(drift_stack: Stack) -> None:
    serve(drift_stack, training_like(50))
    risk = scan(drift_stack)["models"]["risk"]
    assert (risk["rows"], risk["drifting"], risk["flagged"]) == (50, [], False)
    assert risk["prediction_drift_score"] is None
    report = drift_stack.services.backends.documents.get(REPORTS, risk["report_id"])
    assert report is not None
    assert {f["status"] for f in report.data["features"]} == {"insufficient data"}


def test_a_second_scan_in_the_hour_replaces_the_report(drift_stack: Stack) -> None:
    serve(drift_stack, training_like(120))
    now = datetime.now(UTC)
    first = drift_scan(drift_stack.services, DriftScanRequest(), now=now)
    serve(drift_stack, training_like(10, seed=12))
    second = drift_scan(drift_stack.services, DriftScanRequest(), now=now)
    report_id = first["models"]["risk"]["report_id"]
    assert second["models"]["risk"]["report_id"] == report_id
    assert report_id == f"risk@1.0.0@{now.strftime('%Y-%m-%dT%H')}"
    reports = drift_stack.services.backends.documents.query(REPORTS)
    assert [r.id for r in reports] == [report_id]
    assert reports[0].data["rows"] == 130


def test_only_named_models_are_scanned_and_the_budget_is_kept(drift_stack: Stack) -> None:
    result = scan(drift_stack, models=["risk", "nope"], window_hours=1)
    assert result["status"] == "done"
    assert result["models"]["nope"] == {"skipped": "not registered"}
    assert result["models"]["risk"]["rows"] == 0
    result = scan(drift_stack, time_budget_s=1e-9)
    assert result["status"] == "partial"
    assert result["models"]["risk"] == {"skipped": "time budget spent"}


def test_a_request_the_schema_refuses_is_422(drift_stack: Stack) -> None:
    client = function_client("drift_scan")
    for body in ({"window_hours": 0}, {"models": ["x"] * 51}, {"extra": 1}):
        response = client.post("/v1/jobs/drift-scan", json=body, headers=drift_stack.headers())
        assert response.status_code == 422, body


def test_drift_scan_needs_its_job_permission(drift_stack: Stack) -> None:
    response = function_client("drift_scan").post(
        "/v1/jobs/drift-scan", json={}, headers=drift_stack.headers(("model:*:predict",))
    )
    assert response.status_code == 403


def test_a_sampler_failure_never_fails_a_prediction(
    drift_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("sampler bug")

    monkeypatch.setattr(drift_stack.services.drift_sampler, "observe", broken)
    serve(drift_stack, training_like(3))
