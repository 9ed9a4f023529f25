"""Compliance rules against a real embedded deployment: each rule is made to fail the way
the state really goes wrong, and to pass when it is right; then the scan as a whole."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from common.audit.payload_log import PREDICTION_LOG, KeptPrediction
from common.audit.retention import RetentionRequest, purge_retention
from common.audit.trail import ENTRIES, entry_id
from common.backends.base import rfc3339
from common.experiments.core import ASSIGNMENTS
from common.monitoring.compliance import checks as compliance
from common.monitoring.compliance.checks import DRIFT_REPORTS, DRIFT_WINDOWS, RULES
from common.monitoring.compliance.context import ComplianceContext, RuleResult
from common.monitoring.compliance.scan import (
    SCANS,
    ComplianceScanRequest,
    compliance_scan,
    history,
    run_rule,
    summarise,
)
from common.promotion.lifecycle import Lifecycle
from common.registry.records import MODELS, VERSIONS, version_doc_id
from tests.audit.test_trail import event
from tests.support.compliance_pages import sentiment_lexicon
from tests.support.fixtures import Stack, register_risk
from tools.training.base import register_built

ALL = [rule.rule_id for rule in RULES]


def check(stack: Stack, rule_id: str, now: datetime | None = None) -> RuleResult:
    rule = next(r for r in RULES if r.rule_id == rule_id)
    return run_rule(rule, ComplianceContext(stack.services, now or datetime.now(UTC)))


def failing(result: RuleResult) -> list[dict[str, Any]]:
    return [d for d in result.details if d["passed"] is False]


def rewrite_version(stack: Stack, change: Any, model: str = "risk", version: str = "1.0.0") -> None:
    """Edit a stored version document in place, as a hand edit of the store would."""
    documents = stack.services.backends.documents
    doc = documents.get(VERSIONS, version_doc_id(model, version))
    assert doc is not None
    data = json.loads(json.dumps(doc.data))
    change(data)
    documents.set(VERSIONS, version_doc_id(model, version), data)


def write_drift_report(stack: Stack, created: datetime, version: str = "1.0.0") -> None:
    window_end = created.strftime("%Y-%m-%dT%H")
    stack.services.backends.documents.set(
        DRIFT_REPORTS,
        f"risk@{version}@{window_end}",
        {
            "model_id": "risk",
            "version": version,
            "window_end": window_end,
            "created_at": rfc3339(created),
            "prediction_drift_score": 0.01,
            "flagged": False,
        },
    )


def write_drift_window(stack: Stack, hour: datetime, served: int, shard: int = 0) -> str:
    window = hour.strftime("%Y-%m-%dT%H")
    stack.services.backends.documents.set(
        DRIFT_WINDOWS,
        f"risk@1.0.0@{window}@{shard}",
        {
            "model_id": "risk",
            "version": "1.0.0",
            "window": window,
            "shard": shard,
            "served": served,
            "updated_at": rfc3339(hour + timedelta(minutes=59)),
        },
    )
    return window


def audited(stack: Stack, *events: Any) -> str:
    """Append real entries through the audit log; the chain they were written to."""
    audit = stack.services.audit
    for e in events:
        audit.append(e)
    return audit.chain


def last_closed_hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


# --- GDPR_001 --------------------------------------------------------------------------
def kept(moment: datetime) -> KeptPrediction:
    """A prediction the payload log keeps, as the pipeline forms it at ``moment``."""
    return KeptPrediction(
        metadata={"time": rfc3339(moment), "model_id": "risk", "principal": "analyst-7"},
        payload={
            "financial_data": {"instances": [{"revenue_musd": 812.5}]},
            "proprietary_metrics": {"predictions": [0.25]},
        },
    )


def test_personal_data_past_retention_fails(stack: Stack) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=stack.settings.retention_days + 30)
    chain = audited(
        stack,
        event(1, time=rfc3339(old), kept=kept(old)),
        event(2, time=rfc3339(now), kept=kept(now)),
    )
    stack.services.backends.documents.create(
        ASSIGNMENTS,
        "exp1:req-9",
        {"experiment_id": "exp1", "request_id": "req-9", "variant": "control",
         "version": "1.0.0", "subject": "analyst-7", "at": rfc3339(old)},
    )  # fmt: skip
    result = check(stack, "GDPR_001", now)
    assert result.passed is False
    by_collection = {d["collection"]: d for d in result.details}
    entries = by_collection[ENTRIES]
    assert entries["count"] == 1
    assert entries["oldest"][0]["id"] == entry_id(chain, 1)
    assert entries["oldest"][0]["personal_fields"] == [
        "sealed",
        "personal_sha256",
        "personal_nonce",
    ]
    assert by_collection[ASSIGNMENTS]["count"] == 1
    assert by_collection[ASSIGNMENTS]["oldest"][0]["id"] == "exp1:req-9"
    predictions = by_collection[PREDICTION_LOG]
    assert predictions["count"] == 1
    assert predictions["oldest"][0]["id"] == entry_id(chain, 1)
    assert predictions["oldest"][0]["personal_fields"] == [
        "principal",
        "financial_data",
        "proprietary_metrics",
    ]
    assert "retention" in entries["reason"]
    shown = json.dumps(result.details)
    assert "203.0.113.9" not in shown
    assert "analyst-7" not in shown


def test_an_old_entry_keeping_only_the_callers_digest_still_fails(stack: Stack) -> None:
    """The keyed digest of the caller is personal data too: an entry whose sealed part
    went but whose digest stayed has not been purged."""
    now = datetime.now(UTC)
    old = now - timedelta(days=stack.settings.retention_days + 30)
    chain = audited(stack, event(1, time=rfc3339(old)))
    documents = stack.services.backends.documents
    doc = documents.get(ENTRIES, entry_id(chain, 1))
    assert doc is not None
    assert "personal_sha256" in doc.data
    documents.set(ENTRIES, doc.id, {k: v for k, v in doc.data.items() if k != "sealed"})
    entries = {d["collection"]: d for d in check(stack, "GDPR_001", now).details}[ENTRIES]
    assert entries["count"] == 1
    assert entries["oldest"][0]["personal_fields"] == ["personal_sha256", "personal_nonce"]


def test_recent_or_anonymised_records_pass_retention(stack: Stack) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=stack.settings.retention_days + 30)
    audited(
        stack,
        event(1, time=rfc3339(now - timedelta(days=1)), kept=kept(now - timedelta(days=1))),
        event(2, time=rfc3339(old), kept=kept(old)),
    )
    stack.services.backends.documents.create(
        ASSIGNMENTS, "exp1:req-9", {"experiment_id": "exp1", "subject": "a-7", "at": rfc3339(old)}
    )
    assert check(stack, "GDPR_001", now).passed is False
    purge_retention(stack.services, RetentionRequest(), now=now)
    result = check(stack, "GDPR_001", now)
    assert result.passed is True
    assert [d["count"] for d in result.details] == [0, 0, 0]


# --- MODEL_001 -------------------------------------------------------------------------
def test_a_production_version_without_a_complete_card_fails(stack: Stack) -> None:
    def strip(data: dict[str, Any]) -> None:
        del data["model_card"]["limitations"]
        data["model_card"]["owner"] = "  "

    rewrite_version(stack, strip)
    result = check(stack, "MODEL_001")
    assert result.passed is False
    [bad] = failing(result)
    assert (bad["model_id"], bad["version"]) == ("risk", "1.0.0")
    assert bad["missing_fields"] == ["limitations", "owner"]


def test_a_production_pointer_to_an_unregistered_version_fails(stack: Stack) -> None:
    stack.services.backends.documents.update(MODELS, "risk", {"production_version": "9.9.9"})
    for rule_id in ("MODEL_001", "MODEL_002", "FAIRNESS_001", "MON_001"):
        result = check(stack, rule_id)
        assert result.passed is False
        assert "not registered" in failing(result)[0]["reason"]


def test_complete_model_cards_pass(stack: Stack) -> None:
    result = check(stack, "MODEL_001")
    assert result.passed is True
    assert result.details == [
        {"model_id": "risk", "version": "1.0.0", "missing_fields": [], "passed": True}
    ]


# --- MODEL_002 -------------------------------------------------------------------------
def test_a_version_put_in_production_without_the_gate_fails(stack: Stack) -> None:
    register_risk(stack.lifecycle, "1.1.0", promote=False)
    stack.services.backends.documents.update(MODELS, "risk", {"production_version": "1.1.0"})
    result = check(stack, "MODEL_002")
    assert result.passed is False
    [bad] = failing(result)
    assert bad["version"] == "1.1.0"
    assert "outside the lifecycle" in bad["reason"]


def test_a_validation_older_than_twelve_months_fails(stack: Stack) -> None:
    result = check(stack, "MODEL_002", datetime.now(UTC) + timedelta(days=400))
    assert result.passed is False
    [bad] = failing(result)
    assert "days ago" in bad["reason"]
    assert bad["gate_passed"] is True


def test_promotions_and_rollbacks_through_the_lifecycle_pass(stack: Stack) -> None:
    first = stack.lifecycle.history("risk")[0]
    result = check(stack, "MODEL_002")
    assert result.passed is True
    [ok] = result.details
    assert ok["deployment_id"] == first.deployment_id
    assert ok["gate_passed"] is True
    assert ok["verification_passed"] is True

    register_risk(stack.lifecycle, "1.1.0")
    assert check(stack, "MODEL_002").details[0]["version"] == "1.1.0"
    stack.lifecycle.rollback("risk", actor="tests")  # 1.0.0 again, by a rollback
    result = check(stack, "MODEL_002")
    assert result.passed is True
    assert result.details[0]["deployment_id"] == first.deployment_id


# --- AUDIT_001 -------------------------------------------------------------------------
def test_a_healthy_audit_trail_passes(stack: Stack) -> None:
    now = datetime.now(UTC)
    hour = last_closed_hour(now) - timedelta(hours=2)
    write_drift_window(stack, hour, served=40)
    audited(
        stack,
        event(1, time=rfc3339(hour + timedelta(minutes=5))),
        event(2, time=rfc3339(hour + timedelta(minutes=6)), status=422, outcome="invalid"),
        event(3, time=rfc3339(now)),  # the open hour is not judged yet
    )
    result = check(stack, "AUDIT_001", now)
    assert result.passed is True, result.details
    checks = {d["check"]: d for d in result.details}
    assert checks["served_hours_audited"]["entries"] == 2
    assert checks["chain_integrity"]["entries"] == 3
    assert checks["served_hours_audited"]["hours_with_serving"] == 1


def test_an_altered_audit_entry_fails_with_the_verifiers_problem(stack: Stack) -> None:
    now = datetime.now(UTC)
    at = rfc3339(last_closed_hour(now))
    chain = audited(stack, *(event(n, time=at) for n in range(3)))
    documents = stack.services.backends.documents
    victim = entry_id(chain, 2)
    doc = documents.get(ENTRIES, victim)
    assert doc is not None
    documents.set(ENTRIES, victim, {**doc.data, "principal": "someone-else"})
    result = check(stack, "AUDIT_001", now)
    assert result.passed is False
    [bad] = failing(result)
    assert bad["check"] == "chain_integrity"
    assert [(p["kind"], p["entry_id"]) for p in bad["problems"]] == [("altered", victim)]


def test_a_deleted_audit_entry_fails(stack: Stack) -> None:
    now = datetime.now(UTC)
    at = rfc3339(last_closed_hour(now))
    chain = audited(stack, *(event(n, time=at) for n in range(3)))
    stack.services.backends.documents.delete(ENTRIES, entry_id(chain, 2))
    result = check(stack, "AUDIT_001", now)
    assert result.passed is False
    [bad] = failing(result)
    assert [p["kind"] for p in bad["problems"]] == ["missing"]


def test_a_request_id_reused_by_a_client_is_not_a_failure(stack: Stack) -> None:
    now = datetime.now(UTC)
    at = rfc3339(last_closed_hour(now))
    audited(stack, event(1, time=at, request_id="req-1"), event(2, time=at, request_id="req-1"))
    assert check(stack, "AUDIT_001", now).passed is True


def test_served_rows_without_a_successful_prediction_entry_fail(stack: Stack) -> None:
    now = datetime.now(UTC)
    hour = last_closed_hour(now) - timedelta(hours=3)
    window = write_drift_window(stack, hour, served=7)
    write_drift_window(stack, hour, served=5, shard=1)
    failed_request = event(1, time=rfc3339(hour + timedelta(minutes=1)), status=500)
    audited(stack, failed_request)
    result = check(stack, "AUDIT_001", now)
    assert result.passed is False
    [bad] = failing(result)
    assert bad["check"] == "served_hours_audited"
    assert bad["unaudited"] == [{"model_id": "risk", "window": window, "served_rows": 12}]


@pytest.mark.parametrize("operation", ["explainRisk", "explainRiskV2"])
def test_an_hour_served_only_by_explanations_is_audited(stack: Stack, operation: str) -> None:
    """Explanations run through the predictor, so their rows are counted as served: their
    audit entries account for them as a prediction's do."""
    now = datetime.now(UTC)
    hour = last_closed_hour(now) - timedelta(hours=3)
    write_drift_window(stack, hour, served=10)
    audited(stack, event(1, time=rfc3339(hour + timedelta(minutes=1)), operation=operation))
    assert check(stack, "AUDIT_001", now).passed is True


# --- FAIRNESS_001 ----------------------------------------------------------------------
def test_a_fairness_gap_above_threshold_fails(stack: Stack) -> None:
    rewrite_version(stack, lambda d: d["reports"]["fairness"].update(max_gap=0.4))
    result = check(stack, "FAIRNESS_001")
    assert result.passed is False
    [bad] = failing(result)
    assert (bad["attribute"], bad["max_gap"], bad["threshold"]) == ("sector", 0.4, 0.25)
    assert "above" in bad["reason"]


def test_a_missing_fairness_report_fails(stack: Stack) -> None:
    rewrite_version(stack, lambda d: d.update(reports={}))
    result = check(stack, "FAIRNESS_001")
    assert result.passed is False
    assert "no fairness report" in failing(result)[0]["reason"]


def test_a_fair_classifier_passes(stack: Stack) -> None:
    result = check(stack, "FAIRNESS_001")
    assert result.passed is True
    [ok] = result.details
    assert ok["attribute"] == "sector"
    assert ok["max_gap"] <= ok["threshold"]


def test_free_text_classifiers_are_not_applicable_never_passed(empty_stack: Stack) -> None:
    lifecycle: Lifecycle = empty_stack.lifecycle
    register_built(lifecycle, sentiment_lexicon(), version="1.0.0", created_by="tests")
    result = check(empty_stack, "FAIRNESS_001")
    assert result.passed is None
    [na] = result.details
    assert (na["model_id"], na["passed"]) == ("sentiment", None)
    assert "no group attribute" in na["reason"]

    register_risk(lifecycle)
    result = check(empty_stack, "FAIRNESS_001")
    assert result.passed is True
    assert {d["model_id"]: d["passed"] for d in result.details} == {
        "risk": True,
        "sentiment": None,
    }


# --- SEC_001 ---------------------------------------------------------------------------
def test_a_tampered_artifact_fails(stack: Stack) -> None:
    record = stack.registry.get_version("risk", "1.0.0")
    path = stack.settings.resolved_artifact_dir / record.artifact_key
    path.chmod(0o644)
    path.write_bytes(b"not the registered model")
    result = check(stack, "SEC_001")
    assert result.passed is False
    [bad] = failing(result)
    assert bad["expected_sha256"] == record.artifact_sha256
    assert bad["actual_sha256"] != record.artifact_sha256
    assert "SHA-256" in bad["reason"]


def test_a_missing_artifact_fails(stack: Stack) -> None:
    record = stack.registry.get_version("risk", "1.0.0")
    (stack.settings.resolved_artifact_dir / record.artifact_key).unlink()
    result = check(stack, "SEC_001")
    assert result.passed is False
    assert "missing" in failing(result)[0]["reason"]


def test_intact_artifacts_pass(stack: Stack) -> None:
    register_risk(stack.lifecycle, "1.1.0", promote=False)
    result = check(stack, "SEC_001")
    assert result.passed is True
    assert [d["version"] for d in result.details] == ["1.0.0", "1.1.0"]


# --- MON_001 ---------------------------------------------------------------------------
def test_no_drift_report_fails(stack: Stack) -> None:
    result = check(stack, "MON_001")
    assert result.passed is False
    assert failing(result)[0]["reason"] == "no drift report"


def test_a_drift_report_older_than_26_hours_fails(stack: Stack) -> None:
    now = datetime.now(UTC)
    write_drift_report(stack, now - timedelta(hours=27))
    result = check(stack, "MON_001", now)
    assert result.passed is False
    assert "26 hours" in failing(result)[0]["reason"]


def test_a_recent_drift_report_passes(stack: Stack) -> None:
    now = datetime.now(UTC)
    write_drift_report(stack, now)
    result = check(stack, "MON_001", now)
    assert result.passed is True
    assert result.details[0]["latest_report_at"] == rfc3339(now)


# --- the scan --------------------------------------------------------------------------
def test_a_healthy_platform_scans_compliant_and_is_stored(stack: Stack) -> None:
    now = datetime.now(UTC)
    write_drift_report(stack, now)
    result = compliance_scan(stack.services, ComplianceScanRequest(), now=now)
    assert result["passed"] == ALL
    assert (result["failed"], result["not_applicable"]) == ([], [])
    assert (result["score"], result["status"]) == (100.0, "compliant")
    assert result["recommendations"] == []
    assert result["scan_id"].startswith(now.strftime("%Y%m%dT%H%M%SZ") + "-")
    stored = stack.services.backends.documents.get(SCANS, result["scan_id"])
    assert stored is not None
    assert stored.data == result


def test_the_scan_reads_both_document_stores(any_stack: Stack) -> None:
    register_risk(any_stack.lifecycle)
    now = datetime.now(UTC)
    hour = last_closed_hour(now)
    write_drift_report(any_stack, now)
    write_drift_window(any_stack, hour, served=3)
    old = now - timedelta(days=any_stack.settings.retention_days + 1)
    audited(any_stack, event(1, time=rfc3339(hour)), event(2, time=rfc3339(old)))
    first = compliance_scan(any_stack.services, ComplianceScanRequest(), now=now)
    assert first["failed"] == ["GDPR_001"]
    assert first["passed"] == [r for r in ALL if r != "GDPR_001"]
    assert first["status"] == "non_compliant"
    later = now + timedelta(minutes=1)
    second = compliance_scan(
        any_stack.services, ComplianceScanRequest(rules=["SEC_001"]), now=later
    )
    assert [s["scan_id"] for s in history(any_stack.services)] == [
        second["scan_id"],
        first["scan_id"],
    ]


def test_a_broken_critical_rule_makes_the_platform_non_compliant(stack: Stack) -> None:
    record = stack.registry.get_version("risk", "1.0.0")
    path = stack.settings.resolved_artifact_dir / record.artifact_key
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    result = compliance_scan(stack.services, ComplianceScanRequest())  # and no drift report
    assert result["failed"] == ["SEC_001", "MON_001"]
    assert result["status"] == "non_compliant"
    assert result["score"] == round(100 * (24 - 4 - 3) / 24, 1)
    sec = next(r for r in RULES if r.rule_id == "SEC_001")
    assert [r["rule_id"] for r in result["recommendations"]] == ["SEC_001", "MON_001"]
    assert result["recommendations"][0]["remediation"] == sec.remediation


def test_scans_are_kept_as_history(stack: Stack) -> None:
    now = datetime.now(UTC)
    first = compliance_scan(stack.services, ComplianceScanRequest(), now=now)
    write_drift_report(stack, now)
    second = compliance_scan(
        stack.services, ComplianceScanRequest(), now=now + timedelta(seconds=1)
    )
    assert first["scan_id"] != second["scan_id"]
    assert len(stack.services.backends.documents.query(SCANS)) == 2
    assert [s["scan_id"] for s in history(stack.services)] == [
        second["scan_id"],
        first["scan_id"],
    ]
    assert [s["status"] for s in history(stack.services, limit=1)] == ["compliant"]


def test_an_error_inside_a_rule_fails_that_rule_only(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: ComplianceContext) -> Any:
        raise RuntimeError("internal detail that must not be stored")

    rules = tuple(
        dataclasses.replace(r, check=broken) if r.rule_id == "SEC_001" else r for r in RULES
    )
    monkeypatch.setattr(compliance, "RULES", rules)
    now = datetime.now(UTC)
    write_drift_report(stack, now)
    result = compliance_scan(stack.services, ComplianceScanRequest(), now=now)
    assert result["failed"] == ["SEC_001"]
    assert result["passed"] == [r for r in ALL if r != "SEC_001"]
    [sec] = [r for r in result["results"] if r["rule_id"] == "SEC_001"]
    assert sec["details"][0]["error"] == "RuntimeError"
    assert "internal detail" not in json.dumps(result)


def test_a_scan_runs_only_the_requested_rules(stack: Stack) -> None:
    request = ComplianceScanRequest.model_validate({"rules": ["MON_001", "MODEL_001"]})
    result = compliance_scan(stack.services, request)
    assert [r["rule_id"] for r in result["results"]] == ["MODEL_001", "MON_001"]
    assert result["score"] == 50.0


@pytest.mark.parametrize(
    "body",
    [{"rules": ["NOPE_001"]}, {"rules": ["SEC_001"] * 21}, {"rules": "SEC_001"}, {"x": 1}],
)
def test_a_scan_request_is_strict(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ComplianceScanRequest.model_validate(body)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_scan_logs_one_structured_line(stack: Stack) -> None:
    handler = _Capture()
    logger = logging.getLogger("ipo.jobs")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        result = compliance_scan(stack.services, ComplianceScanRequest(rules=["SEC_001"]))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    [line] = [r for r in handler.records if getattr(r, "job", None) == "compliance_scan"]
    assert (line.score, line.status, line.failed) == (  # type: ignore[attr-defined]
        result["score"],
        "compliant",
        [],
    )


def _result(rule_id: str, severity: Any, passed: bool | None) -> RuleResult:
    return RuleResult(rule_id, rule_id, "test", severity, passed, [], f"fix {rule_id}")


def test_scoring_weighs_severity_and_a_critical_failure_is_never_compliant() -> None:
    highs = [_result(f"H{n}", "high", True) for n in range(12)]
    summary = summarise([_result("C", "critical", False), *highs, _result("N", "low", None)])
    assert summary["score"] == 90.0  # 36 of 40: the not applicable rule does not count
    assert summary["status"] == "non_compliant"
    assert summary["not_applicable"] == ["N"]

    summary = summarise([_result("L", "low", False), _result("M", "medium", False), *highs])
    assert (summary["score"], summary["status"]) == (round(100 * 36 / 39, 1), "compliant")
    assert [r["rule_id"] for r in summary["recommendations"]] == ["M", "L"]

    nothing = summarise([_result("N", "low", None)])
    assert (nothing["score"], nothing["status"]) == (None, "non_compliant")


def test_a_context_needs_an_aware_time(stack: Stack) -> None:
    with pytest.raises(ValueError, match="timezone"):
        ComplianceContext(stack.services, datetime(2026, 1, 1))


def test_the_scan_runs_as_a_function(stack: Stack) -> None:
    from tests.conftest import function_client

    response = function_client("compliance_scan").post(
        "/v1/jobs/compliance-scan",
        json={"rules": ["MODEL_001", "SEC_001"]},
        headers=stack.headers(),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert sorted(r["rule_id"] for r in body["results"]) == ["MODEL_001", "SEC_001"]
    assert body["status"] == "compliant"
    unknown = function_client("compliance_scan").post(
        "/v1/jobs/compliance-scan", json={"rules": ["NOPE_001"]}, headers=stack.headers()
    )
    assert unknown.status_code == 422


def test_rules_left_unchecked_by_the_time_budget_fail(stack: Stack) -> None:
    result = compliance_scan(
        stack.services, ComplianceScanRequest(rules=["MODEL_001"], time_budget_s=1e-9)
    )
    (only,) = result["results"]
    assert only["passed"] is False
    assert "time budget" in only["details"][0]["reason"]
    assert result["status"] == "non_compliant"
