"""Which code answers an operation.

A route of ``openapi.yaml`` names its handler module (``x-ipo-handler``); that module's
``OPERATIONS`` says what runs and which body schema it takes. A function imports only the
handler modules of its own routes, so a prediction function never loads the scans'
charting, nor a scan the serving path it does not use. A test checks that the spec and
the modules name the same operations.
"""

from __future__ import annotations

import importlib
from functools import cache

from common.api.calls import Operation
from common.api.routes import Route, all_routes

HANDLERS = "common.api.handlers"


@cache
def _table(handler: str) -> dict[str, Operation]:
    table: dict[str, Operation] = importlib.import_module(f"{HANDLERS}.{handler}").OPERATIONS
    return table


def operation_of(route: Route) -> Operation:
    return _table(route.handler)[route.operation_id]


def all_operations() -> dict[str, Operation]:
    """Every handler module's operations: what the local gateway and the tests see."""
    found: dict[str, Operation] = {}
    for handler in sorted({r.handler for r in all_routes()}):
        found.update(_table(handler))
    return found
