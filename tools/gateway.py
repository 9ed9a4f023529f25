"""The local gateway: every function under its route, as API Gateway serves them.

Routes come from the same OpenAPI file API Gateway is configured from. Each request is
handed to the function's own entry (``functions/<name>/main.py``), so the code that runs
locally is the code that is deployed. Like functions-framework, the gateway routes every
method and path itself (no Flask routing or method handling), so answers match the
deployed functions'.

The gateway also serves the stored HTML reports (``common/monitoring/reports.py``) at
``/reports/<drift|compliance|shadow>/<name>.html``, without a token: it binds 127.0.0.1 and is for
a browser on the same machine. In the cloud reports stay artifacts in the bucket; API
Gateway has no route to them. A report is served only if its path, with every symbolic
link resolved, is a regular file under the artifact folder's ``reports/``: a link planted
there (to ``.env``, the key file) is a 404 like any missing report.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Request, Response

from common.api import metrics
from common.api.dispatch import error_response, find_route, request_id_of
from common.api.routes import all_routes, error_style, functions
from common.backends.base import check_artifact_key
from common.core import logs
from common.core.errors import NotFoundError, ServiceError
from common.monitoring.html import KINDS, ReportKind, report_key
from common.services import get_services

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"

FunctionEntry = Callable[[Request], Response]

REPORT_PATH = re.compile(r"^/reports/(drift|compliance|shadow)/([A-Za-z0-9_.@+-]{1,200})\.html$")
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def is_report_file(artifact_dir: Path, key: str) -> bool:
    """True if ``key`` under the local artifact folder is, links resolved, a regular file
    strictly inside its ``reports/`` folder."""
    try:
        reports = (artifact_dir / "reports").resolve()
        path = artifact_dir.joinpath(*key.split("/")).resolve(strict=True)
        return path.is_relative_to(reports) and stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, RuntimeError):  # missing, unreadable, or a loop of links
        return False


def serve_report(request: Request) -> Response:
    """A stored HTML report; 404 in the one error shape for any other path."""
    request_id = request_id_of(request)
    match = REPORT_PATH.fullmatch(request.path)
    try:
        if match is None:
            raise ValueError(request.path)
        kinds: dict[str, ReportKind] = {kind: kind for kind in KINDS}
        key = check_artifact_key(report_key(kinds[match[1]], match[2]))
    except ValueError:
        return error_response(NotFoundError("no such report"), request_id)
    services = get_services()
    settings = services.settings
    if settings.artifact_store == "local" and not is_report_file(
        settings.resolved_artifact_dir, key
    ):
        return error_response(NotFoundError("no such report"), request_id)
    try:
        page = services.backends.artifacts.get(key)
    except NotFoundError:
        return error_response(NotFoundError("no such report"), request_id)
    except ServiceError as exc:
        return error_response(exc, request_id)
    response = Response(page, content_type="text/html; charset=utf-8")
    response.headers.update(REPORT_HEADERS)
    response.headers["X-Request-Id"] = request_id
    return response


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
    metrics.enable()
    routes = all_routes()
    app = Flask("ipo_gateway")

    def route_request(request: Request) -> Response:
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            response = Response('{"status":"ok"}', mimetype="application/json")
            response.headers["X-Request-Id"] = request_id_of(request)
            return response
        if request.path == "/metrics" and request.method in ("GET", "HEAD"):
            page, content_type = metrics.exposition()
            return Response(page, content_type=content_type)
        if request.path.startswith("/reports/") and request.method in ("GET", "HEAD"):
            return serve_report(request)
        started = time.perf_counter()
        try:
            route, _ = find_route(routes, request.method, request.path)
        except ServiceError as exc:  # no function owns this path and method: 404 or 405
            request_id = request_id_of(request)
            logs.request_line(
                function="gateway",
                request=request,
                status=exc.status,
                latency_s=time.perf_counter() - started,
                request_id=request_id,
                subject=None,
                labels={"error_code": exc.code},
            )
            return error_response(exc, request_id, error_style(request.path))
        return entries[route.function](request)

    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Flask's request context, URL map and signals do nothing here that the gateway
        # needs: every path goes to route_request, which reads only the request itself.
        response = route_request(Request(environ))
        return response(environ, start_response)

    app.wsgi_app = serve  # type: ignore[method-assign]
    return app
