"""Routes, read once from the OpenAPI 2.0 file that also configures API Gateway.

Each operation names its Cloud Function (``x-ipo-function``), the handler module that
answers it (``x-ipo-handler``, under ``common/api/handlers/``) and the permission it needs
(``x-ipo-permission``, formatted with the path parameters). A function serves only its own
operations; the local gateway serves them all under the same paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SPEC_PATH = Path(__file__).with_name("openapi.yaml")
_METHODS = ("get", "put", "post", "delete", "patch")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SEGMENT = "[A-Za-z0-9_.@+-]{1,128}"  # no ':' - parameters fill permission strings
PLATFORM_ERRORS, OIP_ERRORS = "platform", "oip"
"""Error shapes (``x-ipo-errors``): the platform's ``{"error": {code, message, details},
"request_id"}``, or the Open Inference Protocol's ``{"error": message, ...}``."""


@dataclass(frozen=True)
class Route:
    operation_id: str
    function: str
    handler: str
    method: str
    path: str
    permission: str | None
    pattern: re.Pattern[str]
    errors: str = PLATFORM_ERRORS

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


def _compile(template: str) -> re.Pattern[str]:
    out, last = "", 0
    for param in _PARAM.finditer(template):
        out += re.escape(template[last : param.start()]) + f"(?P<{param.group(1)}>{_SEGMENT})"
        last = param.end()
    return re.compile(out + re.escape(template[last:]))


@cache
def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        # libyaml's safe loader reads the spec in a fifth of the pure-Python one's time,
        # which every function pays before its first answer: same documents, same safety
        if yaml.__with_libyaml__:
            spec: dict[str, Any] = yaml.load(handle, Loader=yaml.CSafeLoader)
        else:
            spec = yaml.safe_load(handle)
    return spec


@cache
def all_routes(path: Path = SPEC_PATH) -> tuple[Route, ...]:
    routes = []
    for template, item in load_spec(path)["paths"].items():
        for method, op in item.items():
            if method not in _METHODS:
                continue
            routes.append(
                Route(
                    operation_id=op["operationId"],
                    function=op["x-ipo-function"],
                    handler=op["x-ipo-handler"],
                    method=method.upper(),
                    path=template,
                    permission=op.get("x-ipo-permission"),
                    pattern=_compile(template),
                    errors=op.get("x-ipo-errors", PLATFORM_ERRORS),
                )
            )
    return tuple(routes)


@cache
def routes_of(function: str, path: Path = SPEC_PATH) -> tuple[Route, ...]:
    found = tuple(r for r in all_routes(path) if r.function == function)
    if not found:
        raise LookupError(f"the OpenAPI file has no operation for function {function!r}")
    return found


def error_style(path: str) -> str:
    """The error shape of a request no route matched: the protocol's under ``/v2``."""
    return OIP_ERRORS if path == "/v2" or path.startswith("/v2/") else PLATFORM_ERRORS


def functions(path: Path = SPEC_PATH) -> set[str]:
    return {r.function for r in all_routes(path)}


def predict_routes(path: Path = SPEC_PATH) -> dict[str, str]:
    """operationId -> model id, for each prediction route (``POST /v1/predict/<model>``)."""
    return {
        r.operation_id: r.path.rsplit("/", 1)[1] for r in all_routes(path) if r.handler == "predict"
    }


def served_models(path: Path = SPEC_PATH) -> tuple[str, ...]:
    """The models the platform serves: the one list, read from the prediction routes."""
    return tuple(sorted(predict_routes(path).values()))
