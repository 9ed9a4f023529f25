"""The HTML reports of the drift and compliance scans: what they show, that stored values
cannot inject markup, that the jobs store them, and how the local gateway serves them."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from common.monitoring import reports
from common.monitoring.compliance.checks import RULES
from common.monitoring.compliance.scan import SCANS, ComplianceScanRequest, compliance_scan
from common.monitoring.drift_scan import REPORTS, DriftScanRequest, drift_scan
from common.services import reset_services, use_services
from tests.monitoring.test_compliance import write_drift_report
from tests.monitoring.test_drift_scan import SHIFTED, scan, serve, training_like
from tests.support.fixtures import Stack, embedded_stack, register_risk
from tools.gateway import create_app

IMG = '<img src="data:image/png;base64,'
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, Any]]]:
    """One drift scan over rows whose one input was shifted by two baseline deviations."""
    stack = embedded_stack(tmp_path_factory.mktemp("reports"), IPO_DRIFT_SAMPLE_RATE="1")
    register_risk(stack.lifecycle)
    use_services(stack.services)
    try:
        baseline = stack.registry.get_version("risk", "1.0.0").drift_baseline[SHIFTED]
        shift = 2 * baseline["std"]
        serve(
            stack,
            [{**r, SHIFTED: min(float(r[SHIFTED]) + shift, 150.0)} for r in training_like(300)],
        )
        yield stack, scan(stack)["models"]["risk"]
    finally:
        reset_services()


@pytest.fixture
def gateway(shifted: tuple[Stack, dict[str, Any]]) -> Iterator[FlaskClient]:
    use_services(shifted[0].services)
    try:
        yield create_app().test_client()
    finally:
        reset_services()


def stored_page(stack: Stack, key: str) -> str:
    return stack.services.backends.artifacts.get(key).decode("utf-8")


def test_the_drift_job_stores_the_report_and_names_it(
    shifted: tuple[Stack, dict[str, Any]],
) -> None:
    stack, risk = shifted
    assert risk["report_html"] == f"reports/drift/{risk['report_id']}.html"
    document = stack.services.backends.documents.get(REPORTS, risk["report_id"])
    assert document is not None
    assert document.data["report_html"] == risk["report_html"]
    page = stored_page(stack, risk["report_html"])
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page


def test_the_drift_report_tables_features_and_draws_the_drifting_ones(
    shifted: tuple[Stack, dict[str, Any]],
) -> None:
    stack, risk = shifted
    page = stored_page(stack, risk["report_html"])
    baseline = stack.registry.get_version("risk", "1.0.0").drift_baseline
    assert page.count("<tr") == len(baseline) + 1  # a header and one row per feature
    highlighted = re.findall(r'<tr class="drift"><td>([^<]*)</td>', page)
    assert highlighted == risk["drifting"]
    assert SHIFTED in highlighted
    assert f'<tr class=""><td>{SHIFTED}</td>' not in page
    charted = [SHIFTED, *(n for n in baseline if n.startswith("prediction."))]
    assert page.count(IMG) == len(set(charted) | set(risk["drifting"]))
    for name in charted:
        assert f"{name}: baseline vs live" in page
    uri = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert uri is not None
    assert base64.b64decode(uri[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_stored_values_are_escaped() -> None:
    report = {
        "model_id": EVIL,
        "version": "1.0.0",
        "rows": 5,
        "features": [{"feature": EVIL, "kind": "categorical", "n": 5, "status": "drift"}],
        "drifting": [EVIL],
        "flagged": True,
    }
    chart = ([EVIL, "$x$ & <b>"], [0.5, 0.5], [0.0, 1.0])
    page = reports.render_drift_report(report, {EVIL: chart})
    assert EVIL not in page
    assert "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count(IMG) == 1
    result = {"rule_id": "SEC_001", "name": EVIL, "severity": "high", "passed": False}
    scan_doc = {
        "scan_id": "s1",
        "status": EVIL,
        "results": [{**result, "details": [{"reason": EVIL}], "remediation": EVIL}],
        "recommendations": [{"rule_id": EVIL, "severity": "high", "remediation": EVIL}],
    }
    page = reports.render_compliance_report(scan_doc, [scan_doc])
    assert EVIL not in page
    assert page.count("&lt;script&gt;") == 6


def test_the_compliance_job_stores_a_report_with_its_history(stack: Stack) -> None:
    now = datetime.now(UTC)
    write_drift_report(stack, now)
    first = compliance_scan(stack.services, ComplianceScanRequest(), now=now)
    later = now + timedelta(minutes=1)
    second = compliance_scan(stack.services, ComplianceScanRequest(), now=later)
    assert second["report_html"] == f"reports/compliance/{second['scan_id']}.html"
    stored = stack.services.backends.documents.get(SCANS, second["scan_id"])
    assert stored is not None
    assert stored.data == second
    assert first["report_html"] != second["report_html"]
    page = stored_page(stack, second["report_html"])
    assert len(re.findall(r'<tr class="rule ', page)) == len(RULES)
    assert page.count('<tr class="rule pass">') == len(second["passed"])
    assert "History (last 2 scans)" in page
    assert page.count(IMG) == 1
    for rule in RULES:
        assert f"<td>{rule.rule_id}</td>" in page


def test_a_rendering_failure_leaves_report_html_null(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(reports, "render_compliance_report", broken)
    result = compliance_scan(stack.services, ComplianceScanRequest(rules=["SEC_001"]))
    assert result["report_html"] is None
    stored = stack.services.backends.documents.get(SCANS, result["scan_id"])
    assert stored is not None
    assert stored.data["report_html"] is None


def test_the_gateway_serves_a_report_as_html(
    shifted: tuple[Stack, dict[str, Any]], gateway: FlaskClient
) -> None:
    risk = shifted[1]
    response = gateway.get(f"/reports/drift/{risk['report_id']}.html")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.get_data(as_text=True) == stored_page(shifted[0], risk["report_html"])
    assert gateway.head(f"/reports/drift/{risk['report_id']}.html").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/reports/drift/risk@9.9.9@2000-01-01T00.html",
        "/reports/compliance/nope.html",
        "/reports/other/x.html",
        "/reports/drift/../../secrets.html",
        "/reports/drift/..%2F..%2Fx.html",
        "/reports/drift/a b.html",
        "/reports/drift/x.htm",
        "/reports/drift/.html",
        "/reports/drift/...html",
        "/reports/drift/a:b.html",
        "/reports/drift/" + "a" * 201 + ".html",
        "/reports/",
    ],
)
def test_unknown_or_odd_report_paths_are_404(gateway: FlaskClient, path: str) -> None:
    response = gateway.get(path)
    assert response.status_code == 404
    body = response.get_json()
    assert body["error"]["code"] == "not_found"
    assert "Content-Security-Policy" not in response.headers


def test_store_report_replaces_and_refuses_other_kinds(tmp_path: Path) -> None:
    stack = embedded_stack(tmp_path)
    artifacts = stack.services.backends.artifacts
    assert reports.store_report(artifacts, "drift", "a@1", "<p>one</p>") == "reports/drift/a@1.html"
    reports.store_report(artifacts, "drift", "a@1", "<p>two</p>")
    assert artifacts.get("reports/drift/a@1.html") == b"<p>two</p>"
    with pytest.raises(ValueError, match="kind"):
        reports.store_report(artifacts, "other", "a", "")  # type: ignore[arg-type]


def test_a_drift_rendering_failure_never_fails_the_scan(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(reports, "render_drift_report", broken)
    result = drift_scan(stack.services, DriftScanRequest(window_hours=1))
    risk = result["models"]["risk"]
    assert (result["status"], risk["report_html"]) == ("done", None)
    document = stack.services.backends.documents.get(REPORTS, risk["report_id"])
    assert document is not None
    assert document.data["report_html"] is None
