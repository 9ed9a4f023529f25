"""Compliance rules: each reads the platform's real state and says pass or fail, and why.

A rule reads through the platform's own interfaces (registry, document store, artifact
store, audit verifier) at the moment given by its :class:`ComplianceContext`, and answers
``True`` (passed), ``False`` (failed) or ``None`` (nothing it applies to), with one detail
per finding: which model, version or record, and the reason. ``docs/COMPLIANCE.md`` lists
each rule's exact check; ``common/monitoring/compliance/scan.py`` runs them and keeps the results.

Rules never deserialise an artifact and never copy personal data into their details: a
record holding personal data is named by its id and the names of the fields that hold it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, timedelta
from typing import Any, get_args

from common.audit.macs import PERSONAL_DIGEST, PERSONAL_NONCE
from common.audit.payload_log import PREDICTION_LOG
from common.audit.trail import ENTRIES, audit_key
from common.audit.verify import verify_audit
from common.backends.base import Filter, rfc3339
from common.core.errors import NotFoundError, ServiceError
from common.experiments.core import ASSIGNMENTS
from common.models import runtime_class
from common.monitoring.compliance.context import (
    ComplianceContext,
    PersonalRecords,
    Rule,
    RuleId,
    Verdict,
    _filled,
    _hour,
    _per_production_version,
    finding,
    parse_time,
    verdict,
)
from common.registry.deployments import DEPLOYMENTS, Deployment
from common.registry.records import MODEL_CARD_FIELDS, ModelRecord, ModelVersion

DRIFT_REPORTS = "drift_reports"
DRIFT_WINDOWS = "drift_windows"
MAX_LISTED = 10
"""Offending records named inside one finding (the oldest, or the first found)."""
MAX_PROBLEMS = 50
"""Audit verifier problems copied into one finding."""
VALIDATION_MAX_AGE = timedelta(days=365)
DRIFT_REPORT_MAX_AGE = timedelta(hours=26)
CLOCK_SKEW = timedelta(minutes=5)
AUDIT_HOURS = 24
GROUP_ATTRIBUTES = ("sector",)
"""Input fields that name a group whose members a classifier must treat alike."""
SERVING_OPERATIONS = ("predict", "explain")
"""Operations whose rows the drift windows count (``predictRisk``, ``explainRiskV2``...)."""
PERSONAL_RECORDS = (
    PersonalRecords(ENTRIES, "time", ("sealed", PERSONAL_DIGEST, PERSONAL_NONCE)),
    PersonalRecords(PREDICTION_LOG, "time", ("principal", "financial_data", "proprietary_metrics")),
    PersonalRecords(ASSIGNMENTS, "at", ("subject", "user_id")),
)
"""An audit entry's sealed part holds the caller's address and user agent and a
prediction's bodies, and its keyed digest of the caller (with its nonce) is personal too;
a kept prediction names its caller and holds both bodies; an assignment keeps the user id
as ``subject`` (``user_id`` is checked as well)."""


def check_retention(ctx: ComplianceContext) -> Verdict:
    """Records of PERSONAL_RECORDS and of the context's ``more_personal`` (batch jobs by
    ``finished_at``, shadow pairs by ``time``) dated before ``now - retention_days`` that
    still hold personal data: one finding per collection with the count and the oldest.
    ``purge_retention`` removes them all."""
    days = ctx.services.settings.retention_days
    cutoff = ctx.now - timedelta(days=days)
    details = []
    for records in (*PERSONAL_RECORDS, *ctx.more_personal):
        collection, time_field = records.collection, records.time_field
        offenders = []
        for doc in ctx.documents.query(collection, [Filter(time_field, "<", rfc3339(cutoff))]):
            moment = parse_time(doc.data.get(time_field))
            held = records.held(doc.data)
            if moment is not None and moment < cutoff and held:
                offenders.append((moment, doc.id, held))
        offenders.sort(key=lambda o: (o[0], o[1]))
        oldest = [
            {"id": doc_id, time_field: rfc3339(moment), "personal_fields": held}
            for moment, doc_id, held in offenders[:MAX_LISTED]
        ]
        reason = f"{len(offenders)} record(s) hold personal data past the {days}-day retention"
        item = {"collection": collection, "count": len(offenders), "cutoff": rfc3339(cutoff)}
        details.append(finding(not offenders, reason, **item, oldest=oldest))
    return verdict(details)


def check_model_cards(ctx: ComplianceContext) -> Verdict:
    """Every production version's model card has every MODEL_CARD_FIELDS entry present and
    non-empty (a string with more than white space; not null, [] or {})."""

    def judge(model: ModelRecord, version: ModelVersion) -> dict[str, Any]:
        missing = [name for name in MODEL_CARD_FIELDS if not _filled(version.model_card.get(name))]
        reason = f"model card lacks {', '.join(missing)}"
        where = {"model_id": model.model_id, "version": version.version}
        return finding(not missing, reason, **where, missing_fields=missing)

    return _per_production_version(ctx, judge)


def check_validation(ctx: ComplianceContext) -> Verdict:
    """For every production version: (1) the succeeded deployment whose ``to.generation``
    is the model's current generation names it as production (else the pointer was set
    outside the lifecycle); (2) its latest succeeded ``promote`` deployment to production
    recorded gate results that all passed and a verification that passed; (3) that
    deployment's ``created_at`` (written in the transaction that follows the gate and the
    verification) is within 365 days. The model card's ``validation_date`` is reported but
    not trusted: builders fill it with the build date."""

    def judge(model: ModelRecord, version: ModelVersion) -> dict[str, Any]:
        docs = ctx.documents.query(DEPLOYMENTS, [Filter("model_id", "==", model.model_id)])
        succeeded = [d for d in docs if d.data.get("status") == "succeeded"]
        history = [Deployment.model_validate(d.data) for d in succeeded]
        history.sort(key=lambda d: d.created_at)
        v = version.version
        where = {
            "model_id": model.model_id,
            "version": v,
            "model_card_validation_date": version.model_card.get("validation_date"),
        }
        states = [d.to_state for d in history if d.to_state]
        current = [s for s in states if s.generation == model.generation]
        if not current or current[-1].production_version != v:
            reason = f"no recorded deployment put {v} in production at generation "
            reason += f"{model.generation}: the pointer was set outside the lifecycle"
            return finding(False, reason, **where)
        promotions = [d for d in history if d.kind == "promote" and d.version == v]
        promotions = [d for d in promotions if d.to_state and d.to_state.production_version == v]
        if not promotions:
            return finding(False, f"{v} reached production without a promotion", **where)
        promotion = promotions[-1]
        gate_ok = bool(promotion.gate) and all(r.get("passed") is True for r in promotion.gate)
        verified = promotion.verification.get("passed") is True
        validated_at = parse_time(promotion.created_at)
        problems = []
        if not gate_ok:
            failed = [str(r.get("criterion")) for r in promotion.gate if not r.get("passed")]
            problems.append(f"its promotion's gate did not pass ({', '.join(failed) or 'empty'})")
        if not verified:
            problems.append("its promotion recorded no passing verification")
        if validated_at is None:
            problems.append(f"promotion time {promotion.created_at!r} is not a time")
        elif ctx.now - validated_at > VALIDATION_MAX_AGE:
            problems.append(f"validated {(ctx.now - validated_at).days} days ago (> 12 months)")
        where.update(deployment_id=promotion.deployment_id, validated_at=promotion.created_at)
        where.update(gate_passed=gate_ok, verification_passed=verified)
        return finding(not problems, "; ".join(problems), **where)

    return _per_production_version(ctx, judge)


def check_audit_trail(ctx: ComplianceContext) -> Verdict:
    """Over the last 24 closed UTC hours [floor(now) - 24 h, floor(now)): (a)
    ``verify_audit`` with the cipher (MACs, links, heads, sealed payloads) reports no
    problem over the whole trail; (b) for every (model, hour) whose ``drift_windows`` sum to
    served rows > 0, at least one audit entry of that model in that hour has an operation
    starting with ``predict`` or ``explain`` (both are served through the predictor, so
    both count rows) and status 200. Windows count rows, audit entries count
    requests: no count is compared with the other. Request ids are not required to be
    unique: callers may send their own, and a retry is a second request."""
    end = ctx.now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=AUDIT_HOURS)
    span = {"window_from": rfc3339(start), "window_to": rfc3339(end)}
    entries = ctx.documents.query(
        ENTRIES, [Filter("time", ">=", rfc3339(start)), Filter("time", "<", rfc3339(end))]
    )
    audited: set[tuple[str, str]] = set()
    for doc in entries:
        data, moment = doc.data, parse_time(doc.data.get("time"))
        if (
            moment is not None
            and str(data.get("operation", "")).startswith(SERVING_OPERATIONS)
            and data.get("status") == 200
            and isinstance(data.get("model_id"), str)
        ):
            audited.add((data["model_id"], _hour(moment)))
    details: list[dict[str, Any]] = []
    try:
        key = audit_key(ctx.services.backends.secrets, ctx.services.settings.audit_secret_name)
    except ServiceError as exc:
        details.append(finding(False, exc.message, check="chain_integrity"))
    else:
        report = verify_audit(ctx.documents, key, cipher=ctx.services.cipher)
        problems = [vars(p) for p in report.problems[:MAX_PROBLEMS]]
        reason = f"the audit verifier reports {len(report.problems)} problem(s)"
        counts = {"check": "chain_integrity", "chains": report.chains, "entries": report.entries}
        details.append(finding(report.ok, reason, **counts, problems=problems))
    served: dict[tuple[str, str], int] = defaultdict(int)
    windows = ctx.documents.query(
        DRIFT_WINDOWS, [Filter("window", ">=", _hour(start)), Filter("window", "<", _hour(end))]
    )
    for doc in windows:
        rows, model_id, window = (doc.data.get(k) for k in ("served", "model_id", "window"))
        if isinstance(rows, int) and rows > 0 and isinstance(model_id, str):
            served[(model_id, str(window))] += rows
    unaudited = sorted(k for k in served if k not in audited)
    listed = [
        {"model_id": m, "window": w, "served_rows": served[(m, w)]}
        for m, w in unaudited[:MAX_LISTED]
    ]
    reason = f"{len(unaudited)} model-hour(s) served rows but have no successful "
    reason += "prediction audit entry"
    counts = {
        "check": "served_hours_audited",
        "entries": len(entries),
        "hours_with_serving": len(served),
        **span,
    }
    details.append(finding(not unaudited, reason, **counts, unaudited=listed))
    return verdict(details)


def _is_classifier(kind: str) -> bool:
    """A kind this code does not know cannot be served, so it is not judged as a classifier."""
    try:
        return runtime_class(kind).classifier
    except ServiceError:
        return False


def check_fairness(ctx: ComplianceContext) -> Verdict:
    """Every production version of a classifier (its runtime says so: ``classifier``) whose
    input schema has a group attribute (GROUP_ATTRIBUTES) has ``reports["fairness"]`` with
    numeric ``max_gap <= threshold``; any other version is not applicable, with its reason."""

    def judge(model: ModelRecord, version: ModelVersion) -> dict[str, Any]:
        where = {"model_id": model.model_id, "version": version.version, "kind": version.kind}
        inputs = sorted(version.input_schema.get("properties") or {})
        attribute = next((a for a in GROUP_ATTRIBUTES if a in inputs), None)
        if not _is_classifier(version.kind):
            return finding(None, f"{version.kind} is not a classifier", **where)
        if attribute is None:
            reason = f"no group attribute among its inputs ({', '.join(inputs)}): free text or "
            return finding(None, reason + "figures only, no groups to compare", **where)
        report = version.reports.get("fairness")
        where["attribute"] = attribute
        if not isinstance(report, dict):
            return finding(False, "no fairness report (reports.fairness)", **where)
        gap, limit = report.get("max_gap"), report.get("threshold")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (gap, limit)):
            return finding(False, "its fairness report lacks max_gap or threshold", **where)
        gap, limit = float(gap), float(limit)  # type: ignore[arg-type]
        metric = report.get("metric", "outcome rate")
        reason = f"largest gap in {metric} between {attribute} groups is {gap}, above {limit}"
        return finding(gap <= limit, reason, **where, max_gap=gap, threshold=limit)

    return _per_production_version(ctx, judge)


def check_artifacts(ctx: ComplianceContext) -> Verdict:
    """Every registered version's artifact exists in the artifact store and the SHA-256 of
    the stored bytes equals its ``artifact_sha256``; bytes are hashed, never deserialised."""
    digests: dict[str, str | None] = {}
    details = []
    for model in ctx.services.registry.list_models():
        for version in ctx.services.registry.list_versions(model.model_id):
            key = version.artifact_key
            if key not in digests:
                try:
                    data = ctx.services.backends.artifacts.get(key)
                    digests[key] = hashlib.sha256(data).hexdigest()
                except NotFoundError:
                    digests[key] = None
            actual, expected = digests[key], version.artifact_sha256
            where = {"model_id": version.model_id, "version": version.version, "artifact_key": key}
            if actual is None:
                details.append(finding(False, "the artifact is missing from the store", **where))
            else:
                reason = "the stored bytes do not match the registered SHA-256"
                mismatch = {"expected_sha256": expected, "actual_sha256": actual}
                details.append(finding(actual == expected, reason, **where, **mismatch))
    return verdict(details or [finding(None, "no version is registered")])


def check_monitoring(ctx: ComplianceContext) -> Verdict:
    """Every production version has a ``drift_reports`` document (matched on model_id and
    version) whose ``created_at`` lies within [now - 26 h, now + 5 min]."""

    def judge(model: ModelRecord, version: ModelVersion) -> dict[str, Any]:
        where = {"model_id": model.model_id, "version": version.version}
        docs = ctx.documents.query(DRIFT_REPORTS, [Filter(k, "==", v) for k, v in where.items()])
        times = [t for d in docs if (t := parse_time(d.data.get("created_at"))) is not None]
        early, late = ctx.now - DRIFT_REPORT_MAX_AGE, ctx.now + CLOCK_SKEW
        recent = [t for t in times if early <= t <= late]
        latest = max(recent or times, default=None)
        reason = "no drift report created within the last 26 hours" if times else "no drift report"
        latest_at = rfc3339(latest) if latest else None
        return finding(bool(recent), reason, **where, latest_report_at=latest_at)

    return _per_production_version(ctx, judge)


RULES: tuple[Rule, ...] = (
    Rule("GDPR_001", "Personal data retention", "data_privacy", "critical",
         "Run purge_retention (POST /v1/jobs/purge-retention), and find why its daily "
         "scheduled run did not: it drops the personal data of audit entries and deletes "
         "kept predictions, experiment assignments, ended batch jobs and shadow pairs past "
         "IPO_RETENTION_DAYS.",
         check_retention),
    Rule("MODEL_001", "Model documentation", "model_governance", "high",
         "Complete the model card (every MODEL_CARD_FIELDS entry) of each listed production "
         "version: register a version with the complete card and promote it.",
         check_model_cards),
    Rule("MODEL_002", "Model validation", "model_governance", "high",
         "Promote each listed version through the lifecycle (POST /v1/models/{id}/promote) "
         "so its gate and verification run and are recorded; revalidate at least yearly.",
         check_validation),
    Rule("AUDIT_001", "Audit trail completeness and integrity", "audit_trail", "critical",
         "Investigate the listed problems (scripts/verify_audit.py), find why requests were "
         "answered without an intact audit entry, and treat it as an incident.",
         check_audit_trail),
    Rule("FAIRNESS_001", "Fairness across groups", "fairness", "high",
         "Retrain or roll back each listed classifier until its fairness report shows the gap "
         "between groups within the threshold; a version without a report needs one.",
         check_fairness),
    Rule("SEC_001", "Artifact integrity", "security", "critical",
         "Treat a changed or missing artifact as an incident: roll back the affected model, "
         "restore the artifact from a trusted copy, and find how it was changed.",
         check_artifacts),
    Rule("MON_001", "Drift monitoring", "monitoring", "high",
         "Run the drift scan for each listed production version and find why its daily "
         "scheduled run did not report.",
         check_monitoring),
)  # fmt: skip
RULE_IDS: tuple[str, ...] = tuple(rule.rule_id for rule in RULES)
if get_args(RuleId) != RULE_IDS:
    raise RuntimeError("RuleId must list the ids of RULES, in order")
