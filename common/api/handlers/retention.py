"""The retention purge job and erasure of one data subject."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.audit import retention


def run_purge_retention(call: Call) -> dict[str, Any]:
    return retention.purge_retention(call.services, call.body)


def run_erasure(call: Call) -> dict[str, Any]:
    return retention.erase_subject(call.services, call.body)


OPERATIONS: dict[str, Operation] = {
    "purgeRetention": Operation(run_purge_retention, body=TypeAdapter(retention.RetentionRequest)),
    "eraseSubject": Operation(run_erasure, body=TypeAdapter(retention.ErasureRequest)),
}
