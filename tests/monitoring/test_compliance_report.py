"""The compliance report of a real scan: every entry of a rule listed with its own status,
not applicable told apart from pass, and long strings in elements that wrap."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from common.monitoring import reports
from common.monitoring.compliance.scan import ComplianceScanRequest, compliance_scan
from common.services import reset_services, use_services
from tests.support.compliance_pages import read_report, report_page, risk_and_sentiment_scan
from tests.support.fixtures import Stack
from tools.gateway import create_app

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stack, dict[str, Any]]:
    return risk_and_sentiment_scan(tmp_path_factory.mktemp("compliance-report"))


@pytest.fixture
def gateway(scanned: tuple[Stack, dict[str, Any]]) -> Iterator[FlaskClient]:
    use_services(scanned[0].services)
    try:
        yield create_app().test_client()
    finally:
        reset_services()


def test_every_entry_of_a_rule_is_listed_with_its_own_status(
    scanned: tuple[Stack, dict[str, Any]],
) -> None:
    stack, result = scanned
    _, rows = read_report(report_page(stack, result))
    for stored in result["results"]:
        row = rows[stored["rule_id"]]
        shown = [cls for cls, _ in row.entries]
        wanted = [{True: "pass", False: "fail"}.get(d["passed"], "na") for d in stored["details"]]
        assert shown == wanted, stored["rule_id"]
    monitoring = rows["MON_001"]
    assert monitoring.entries[0][0] == "fail"
    assert "no drift report" in monitoring.entries[0][1]
    assert "model_id: sentiment" in monitoring.entries[0][1]
    assert monitoring.entries[1][0] == "pass"
    assert "model_id: risk" in monitoring.entries[1][1]


def test_a_not_applicable_entry_is_not_shown_as_pass(
    scanned: tuple[Stack, dict[str, Any]],
) -> None:
    stack, result = scanned
    summary, rows = read_report(report_page(stack, result))
    fairness = rows["FAIRNESS_001"]
    assert fairness.classes == ["rule", "pass"]
    assert fairness.result == "pass 1 passed, 1 not applicable"
    [(cls, text)] = [e for e in fairness.entries if "sentiment" in e[1]]
    assert cls == "na"
    assert text.startswith("not applicable no group attribute among its inputs")
    [(cls, text)] = [e for e in fairness.entries if "model_id: risk" in e[1]]
    assert cls == "pass"
    assert text.startswith("pass ")
    assert "attribute: sector" in text
    assert summary["Rules passed / failed / not applicable"] == "6 / 1 / 0"
    entries = [e for row in rows.values() for e in row.entries]
    counts = [sum(cls == c for cls, _ in entries) for c in ("pass", "fail", "na")]
    assert summary["Entries passed / failed / not applicable"] == " / ".join(map(str, counts))
    assert counts[2] == 1


def test_a_rule_that_applies_to_nothing_reads_not_applicable(empty_stack: Stack) -> None:
    result = compliance_scan(empty_stack.services, ComplianceScanRequest(), now=datetime.now(UTC))
    summary, rows = read_report(report_page(empty_stack, result))
    assert result["not_applicable"] == [
        "MODEL_001",
        "MODEL_002",
        "FAIRNESS_001",
        "SEC_001",
        "MON_001",
    ]
    for rule_id in result["not_applicable"]:
        row = rows[rule_id]
        assert row.classes == ["rule", "na"]
        assert row.result == "not applicable 1 not applicable"
        [(cls, text)] = row.entries
        assert cls == "na"
        assert text.startswith("not applicable no ")
    assert summary["Rules passed / failed / not applicable"] == "2 / 0 / 5"


def test_long_hashes_are_in_elements_that_wrap(
    scanned: tuple[Stack, dict[str, Any]], gateway: FlaskClient
) -> None:
    result = scanned[1]
    response = gateway.get(f"/reports/compliance/{result['scan_id']}.html")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == CSP
    page = response.get_data(as_text=True)
    _, rows = read_report(page)
    digests = {d["actual_sha256"] for d in result["results"][5]["details"]}
    assert len(digests) == 2
    for digest in digests:
        assert len(digest) == 64
        assert sum(digest in text for _, text in rows["SEC_001"].entries) == 1
    assert '<table class="rules">' in page
    style = re.search(r"<style>(.*)</style>", page, re.S)
    assert style is not None
    assert "table.rules{table-layout:fixed;width:100%}" in style[1]
    assert re.search(r"(^|[,}\n])h1,td,th,dd,li\{overflow-wrap:anywhere", style[1])


def test_entries_are_escaped_and_the_unlisted_count_is_no_entry() -> None:
    evil = "<script>alert(1)</script>"
    scan = {
        "scan_id": "s1",
        "results": [
            {
                "rule_id": "SEC_001",
                "passed": False,
                "details": [
                    {"passed": False, "reason": evil, evil: evil},
                    {"truncated": 3, "reason": "3 more not listed"},
                ],
            }
        ],
    }
    page = reports.render_compliance_report(scan, [scan])
    assert evil not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3
    summary, rows = read_report(page)
    assert rows["SEC_001"].entries[1] == ("more", "3 more not listed")
    assert rows["SEC_001"].result == "fail 1 failed"
    assert summary["Entries passed / failed / not applicable"] == "0 / 1 / 0"
