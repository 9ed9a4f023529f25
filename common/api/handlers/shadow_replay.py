"""The ``shadow_replay`` job: its own module, so only that function's archive carries
what storing the report page needs (matplotlib)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.shadow.replay import ReplayRequest, replay


def run_shadow_replay(call: Call) -> dict[str, Any]:
    return replay(call.services, call.body)


OPERATIONS: dict[str, Operation] = {
    "shadowReplay": Operation(run_shadow_replay, body=TypeAdapter(ReplayRequest)),
}
