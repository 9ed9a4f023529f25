"""The compliance-scan job."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.monitoring.compliance import scan


def run_compliance_scan(call: Call) -> dict[str, Any]:
    return scan.compliance_scan(call.services, call.body)


OPERATIONS: dict[str, Operation] = {
    "complianceScan": Operation(run_compliance_scan, body=TypeAdapter(scan.ComplianceScanRequest)),
}
