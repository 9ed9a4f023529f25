"""The drift-scan job."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.monitoring import drift_scan


def run_drift_scan(call: Call) -> dict[str, Any]:
    return drift_scan.drift_scan(call.services, call.body)


OPERATIONS: dict[str, Operation] = {
    "driftScan": Operation(run_drift_scan, body=TypeAdapter(drift_scan.DriftScanRequest)),
}
