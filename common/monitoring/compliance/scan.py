"""The ``compliance_scan`` job: run the compliance rules, score them, keep the result.

Runs daily (Cloud Scheduler) and on demand. Each rule runs on its own: an error inside one
fails that rule with the error's type and never stops the scan. The score weighs each
applicable rule by its severity (critical 4, high 3, medium 2, low 1):

    score = 100 * (weights of passed rules) / (weights of applicable rules), 1 decimal

and the platform is ``compliant`` when the score is at least 90 and no critical rule
failed, else ``non_compliant``; with no applicable rule the score is None and nothing has
been shown compliant, so the status is ``non_compliant``. Every scan is stored as a new
document ``compliance_scans/<YYYYMMDDTHHMMSSZ>-<random>``; none is ever overwritten. Its
HTML report (``common/monitoring/reports.py``, with the last 30 scans as history) is stored next, as
``reports/compliance/<scan id>.html``, and only then is the document's ``report_html`` set
to that key; it stays null when rendering failed, which never fails the scan.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from common.backends.base import Order, rfc3339
from common.core.errors import ConflictError, InvalidValuesError
from common.core.validation import StrictModel
from common.monitoring import reports
from common.monitoring.compliance import checks as compliance
from common.monitoring.compliance.context import (
    ComplianceContext,
    ComplianceSources,
    PersonalRecords,
    Rule,
    RuleId,
    RuleResult,
)

log = logging.getLogger("ipo.jobs")

SCANS = "compliance_scans"
WEIGHTS = {"critical": 4, "high": 3, "medium": 2, "low": 1}
COMPLIANT_SCORE = 90.0
HISTORY_MAX = 100
MAX_DETAILS = 50
"""Details kept per rule (failures first); the rest are counted, not listed."""
_ID_ATTEMPTS = 3


class ComplianceScanRequest(StrictModel):
    rules: list[RuleId] | None = Field(
        None,
        max_length=20,
        description="Rule ids to run; all rules when absent.",
    )
    time_budget_s: float = Field(
        120.0, gt=0, le=540, description="Rules not started within this time fail as unchecked."
    )


def _bounded(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ordered = sorted(details, key=lambda d: {False: 0, None: 1}.get(d.get("passed"), 2))
    if len(ordered) <= MAX_DETAILS:
        return ordered
    more = len(ordered) - MAX_DETAILS
    return [*ordered[:MAX_DETAILS], {"truncated": more, "reason": f"{more} more not listed"}]


def _out_of_time(_ctx: ComplianceContext) -> tuple[bool, list[dict[str, Any]]]:
    return False, [{"passed": False, "reason": "not checked: the scan's time budget was spent"}]


def run_rule(rule: Rule, ctx: ComplianceContext, *, in_time: bool = True) -> RuleResult:
    """The rule's result; an error inside its check fails this rule, naming the error type,
    and so does a rule the time budget left unchecked (unknown is not compliant)."""
    try:
        passed, details = rule.check(ctx) if in_time else _out_of_time(ctx)
    except Exception as exc:
        log.warning("compliance rule %s could not run", rule.rule_id, exc_info=True)
        error = type(exc).__name__
        passed, details = (
            False,
            [{"passed": False, "error": error, "reason": f"the check could not run: {error}"}],
        )
    return RuleResult(
        rule_id=rule.rule_id,
        name=rule.name,
        category=rule.category,
        severity=rule.severity,
        passed=passed,
        details=_bounded(details),
        remediation=rule.remediation,
    )


def summarise(results: list[RuleResult]) -> dict[str, Any]:
    """Score, status and recommendations (remediations of failed rules, most severe first)."""
    applicable = [r for r in results if r.passed is not None]
    total = sum(WEIGHTS[r.severity] for r in applicable)
    earned = sum(WEIGHTS[r.severity] for r in applicable if r.passed)
    score = round(100.0 * earned / total, 1) if total else None
    failed = [r for r in results if r.passed is False]
    critical_failed = any(r.severity == "critical" for r in failed)
    compliant = score is not None and score >= COMPLIANT_SCORE and not critical_failed
    ranked = sorted(failed, key=lambda r: -WEIGHTS[r.severity])  # stable: rule order within
    return {
        "score": score,
        "status": "compliant" if compliant else "non_compliant",
        "passed": [r.rule_id for r in results if r.passed is True],
        "failed": [r.rule_id for r in failed],
        "not_applicable": [r.rule_id for r in results if r.passed is None],
        "recommendations": [
            {"rule_id": r.rule_id, "severity": r.severity, "remediation": r.remediation}
            for r in ranked
        ],
    }


def compliance_scan(
    services: ComplianceSources,
    request: ComplianceScanRequest,
    *,
    now: datetime | None = None,
    more_personal: tuple[PersonalRecords, ...] = (),
) -> dict[str, Any]:
    """Run the requested rules (all by default) at ``now``; store and return the result.
    ``more_personal``: what GDPR_001 checks besides the collections below this package."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    started = time.monotonic()
    wanted = set(request.rules) if request.rules is not None else None
    ctx = ComplianceContext(services=services, now=moment, more_personal=more_personal)
    results = [
        run_rule(rule, ctx, in_time=time.monotonic() - started <= request.time_budget_s)
        for rule in compliance.RULES
        if wanted is None or rule.rule_id in wanted
    ]
    summary = summarise(results)
    result: dict[str, Any] = {
        "scan_id": "",
        "created_at": rfc3339(moment),
        **summary,
        "results": [asdict(r) for r in results],
        "seconds": round(time.monotonic() - started, 3),
        "report_html": None,
    }
    documents = services.backends.documents
    for attempt in range(_ID_ATTEMPTS):
        result["scan_id"] = f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        try:
            documents.create(SCANS, result["scan_id"], result)
            break
        except ConflictError:
            if attempt == _ID_ATTEMPTS - 1:
                raise
    result["report_html"] = _html_report(services, result)
    if result["report_html"] is not None:
        documents.update(SCANS, result["scan_id"], {"report_html": result["report_html"]})
    log.info(
        "compliance scan finished",
        extra={
            "job": "compliance_scan",
            "scan_id": result["scan_id"],
            "score": result["score"],
            "status": result["status"],
            "failed": result["failed"],
        },
    )
    return result


def _html_report(services: ComplianceSources, result: dict[str, Any]) -> str | None:
    """Render and store the scan's HTML page; its key, or None when that failed."""
    try:
        page = reports.render_compliance_report(result, history(services, 30))
        return reports.store_report(
            services.backends.artifacts, "compliance", result["scan_id"], page
        )
    except Exception:
        log.warning("compliance scan %s: HTML report not stored", result["scan_id"], exc_info=True)
        return None


def history(services: ComplianceSources, limit: int = 30) -> list[dict[str, Any]]:
    """The latest stored scans, newest first."""
    if not 1 <= limit <= HISTORY_MAX:
        raise InvalidValuesError(
            f"limit must be within 1..{HISTORY_MAX}",
            details=[{"field": "limit", "rule": "range", "value": limit}],
        )
    docs = services.backends.documents.query(
        SCANS, order_by=[Order("created_at", descending=True)], limit=limit
    )
    return [doc.data for doc in docs]
