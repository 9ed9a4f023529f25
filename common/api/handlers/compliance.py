"""The compliance-scan job."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.batch import retention as batch_retention
from common.monitoring.compliance import scan
from common.shadow import retention as shadow_retention


def run_compliance_scan(call: Call) -> dict[str, Any]:
    """All rules; GDPR_001 also over batch jobs and shadow pairs, whose packages sit above
    the compliance package."""
    more = (batch_retention.PERSONAL, shadow_retention.PERSONAL)
    return scan.compliance_scan(call.services, call.body, more_personal=more)


OPERATIONS: dict[str, Operation] = {
    "complianceScan": Operation(run_compliance_scan, body=TypeAdapter(scan.ComplianceScanRequest)),
}
