"""The cache-warming job."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.serving import warm_cache


def run_warm_cache(call: Call) -> dict[str, Any]:
    return warm_cache.warm_cache(call.services, call.body)


OPERATIONS: dict[str, Operation] = {
    "warmCache": Operation(run_warm_cache, body=TypeAdapter(warm_cache.WarmCacheRequest)),
}
