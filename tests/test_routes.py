"""One route table: the OpenAPI file, the handlers and the function folders agree."""

from __future__ import annotations

from common.api import OPERATIONS
from common.routes import all_routes, functions, load_spec
from tests.conftest import ROOT


def test_every_operation_has_a_handler_and_every_handler_a_route() -> None:
    assert {r.operation_id for r in all_routes()} == set(OPERATIONS)


def test_every_function_folder_has_routes_and_every_route_a_folder() -> None:
    folders = {p.parent.name for p in (ROOT / "functions").glob("*/main.py")}
    assert folders == functions(), (
        f"folders without routes: {sorted(folders - functions())}; "
        f"routes naming missing folders: {sorted(functions() - folders)}"
    )


def test_entries_are_thin() -> None:
    for main in (ROOT / "functions").glob("*/main.py"):
        code = [line for line in main.read_text().splitlines() if line.strip()]
        assert len(code) <= 10, f"{main} has logic; move it to common/"
        assert f'dispatch("{main.parent.name}", request)' in main.read_text()


def test_every_protected_operation_declares_a_permission() -> None:
    for route in all_routes():
        assert route.permission, f"{route.operation_id} declares no x-ipo-permission"


def test_operation_ids_are_unique_and_spec_is_swagger_2() -> None:
    spec = load_spec()
    assert spec["swagger"] == "2.0"
    ids = [r.operation_id for r in all_routes()]
    assert len(ids) == len(set(ids))


def test_path_parameters_match_whole_segments_only() -> None:
    (route,) = [r for r in all_routes() if r.operation_id == "getModel"]
    assert route.match("/v1/models/risk") == {"model_id": "risk"}
    assert route.match("/v1/models/risk/extra") is None
    assert route.match("/v1/models/") is None
