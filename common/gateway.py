"""The local gateway: every function under its route, as API Gateway serves them.

Routes come from the same OpenAPI file API Gateway is configured from. Each request is
handed to the function's own entry (``functions/<name>/main.py``), so the code that runs
locally is the code that is deployed.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Request, Response, request

from common.errors import NotFoundError
from common.http import error_response
from common.routes import all_routes, functions

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

FunctionEntry = Callable[[Request], Response]


def load_function(name: str, functions_dir: Path = FUNCTIONS_DIR) -> FunctionEntry:
    source = functions_dir / name / "main.py"
    spec = importlib.util.spec_from_file_location(f"ipo_function_{name}", source)
    if spec is None or spec.loader is None:
        raise LookupError(f"no function entry at {source}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry: FunctionEntry = getattr(module, name)
    return entry


def create_app(functions_dir: Path = FUNCTIONS_DIR) -> Flask:
    entries = {name: load_function(name, functions_dir) for name in sorted(functions())}
    routes = all_routes()
    app = Flask("ipo_gateway")

    def healthz() -> Response:
        return Response('{"status":"ok"}', mimetype="application/json")

    def forward(path: str = "") -> Response:
        full = "/" + path.rstrip("/")
        for route in routes:
            if route.match(full) is not None:
                return entries[route.function](request)
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        return error_response(NotFoundError(f"no operation at {request.method} {full}"), request_id)

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/", "root", forward, methods=_METHODS)
    app.add_url_rule("/<path:path>", "forward", forward, methods=_METHODS)
    return app
