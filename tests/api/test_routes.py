"""One route table: the OpenAPI file, the handlers and the function folders agree."""

from __future__ import annotations

from typing import Any

from common.api.operations import all_operations
from common.api.routes import all_routes, functions, load_spec, served_models
from common.models import kinds
from tests.conftest import ROOT
from tools.training.builders import BUILDERS


def test_every_operation_has_a_handler_and_every_handler_a_route() -> None:
    assert {r.operation_id for r in all_routes()} == set(all_operations())


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


def _resolved(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """A schema with its ``$ref`` (OpenAPI ``definitions`` or pydantic ``$defs``) followed, and
    an optional field's ``anyOf: [X, null]`` reduced to X."""
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return _resolved(options[0], definitions) if len(options) == 1 else schema


def test_request_bodies_in_the_spec_match_the_handlers_schemas() -> None:
    """Each body the spec declares has the fields, required fields and field types of the
    schema its handler validates, integer bounds included, and refuses unknown fields as the
    handler does (a body with no fields at all is left a free-form object in the spec)."""
    spec = load_spec()
    for route in all_routes():
        operation = spec["paths"][route.path][route.method.lower()]
        parameters = [p for p in operation.get("parameters", []) if p["in"] == "body"]
        bodies = [p["schema"] for p in parameters]
        handled = all_operations()[route.operation_id]
        adapter = handled.body
        assert bool(bodies) == (adapter is not None), route.operation_id
        if adapter is None:
            continue
        # the body may be left out exactly when every field has a default
        assert parameters[0]["required"] is not handled.body_optional, route.operation_id
        declared = _resolved(bodies[0], spec["definitions"])
        model = adapter.json_schema()
        fields = model.get("properties", {})
        name = route.operation_id
        assert set(declared.get("properties", {})) == set(fields), name
        assert set(declared.get("required", [])) == set(model.get("required", [])), name
        if fields:
            assert declared.get("additionalProperties") is False, name
        for field, spec_field in declared.get("properties", {}).items():
            model_field = _resolved(fields[field], model.get("$defs", {}))
            spec_field = _resolved(spec_field, spec["definitions"])
            assert spec_field.get("type") == model_field.get("type"), f"{name}.{field}"
            if model_field.get("type") == "integer":
                for bound in ("minimum", "maximum"):
                    assert spec_field.get(bound) == model_field.get(bound), f"{name}.{field}"


def test_every_served_model_has_a_kind_a_builder_and_a_registrable_kind() -> None:
    """A model is added by its route; what the route cannot say is checked here."""
    spec = load_spec()
    enum = spec["definitions"]["RegisterRequest"]["properties"]["kind"]["enum"]
    assert sorted(enum) == kinds(), "registerModelVersion's kind enum lists every kind"
    for model_id in served_models():
        assert model_id in kinds(), f"{model_id} is served but no runtime is registered"
        assert (ROOT / "tools" / "training" / f"{model_id}_builder.py").is_file()
    assert set(BUILDERS) == set(served_models())
