"""A model version's named tensors, derived from what the registry records about it.

Inputs come from the version's input schema (the JSON Schema of its kind's instance): one
input per field, nested objects flattened with dotted names (the ensemble's ``dcf.wacc``),
an open object (the ensemble's parts) resolved through the schema of the component that
validates it. Outputs come from the outputs the version recorded for its golden set, put
through the same encoder as a live answer (``codec.output_tensors``). Nothing is written
by hand, so a new field or a new model kind needs no change here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from common.api.oip.outputs import output_specs
from common.api.oip.tensors import BOOL, BYTES, FP64, INT64, JSON, TEXT, Signature, TensorSpec
from common.models import runtime_class
from common.registry.records import ModelVersion
from common.serving.pipeline import SnapshotCache
from common.serving.pool import ModelPool

_SCALARS = {"number": FP64, "integer": INT64, "boolean": BOOL, "string": BYTES}


def _resolved(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """A property with ``$ref`` followed and ``anyOf: [X, null]`` reduced to X; and
    whether null is allowed."""
    schema = dict(schema)
    while "$ref" in schema or ("allOf" in schema and len(schema["allOf"]) == 1):
        ref = schema.pop("$ref", None) or schema.pop("allOf")[0].get("$ref", "")
        schema = {**defs.get(str(ref).rsplit("/", 1)[-1], {}), **schema}
    options = schema.get("anyOf")
    if options is None:
        return schema, False
    kept = [o for o in options if o.get("type") != "null"]
    nullable = len(kept) < len(options)
    if len(kept) == 1:
        inner, inner_null = _resolved(kept[0], defs)
        return inner, nullable or inner_null
    return {"anyOf": kept}, nullable


def input_specs(
    schema: Mapping[str, Any], nested: Mapping[str, Mapping[str, Any]] | None = None
) -> list[TensorSpec]:
    """The inputs of an instance schema; ``nested`` gives the schema of an open object
    field by its dotted name (the component a composite model hands that field to)."""
    return list(_fields(schema, schema.get("$defs", {}), "", False, nested or {}))


def _fields(
    schema: Mapping[str, Any],
    defs: Mapping[str, Any],
    prefix: str,
    optional: bool,
    nested: Mapping[str, Mapping[str, Any]],
) -> Iterator[TensorSpec]:
    required = set(schema.get("required", []))
    for name, raw in schema.get("properties", {}).items():
        full = prefix + name
        prop, nullable = _resolved(raw, defs)
        absent_ok = optional or nullable or name not in required
        if prop.get("type") == "object":
            inner = prop if prop.get("properties") else nested.get(full)
            if inner is not None:
                inner_defs = {**defs, **inner.get("$defs", {})}
                yield from _fields(inner, inner_defs, full + ".", absent_ok, nested)
            else:  # an object nothing describes: one JSON document per row
                yield TensorSpec(full, BYTES, (-1,), absent_ok, JSON)
            continue
        yield _leaf(full, prop, defs, absent_ok)


def _leaf(
    name: str, prop: Mapping[str, Any], defs: Mapping[str, Any], optional: bool
) -> TensorSpec:
    kind = prop.get("type")
    if kind == "array":
        items, _ = _resolved(prop.get("items", {}), defs)
        datatype = _SCALARS.get(str(items.get("type")))
        if datatype is None:
            return TensorSpec(name, BYTES, (-1,), optional, JSON)
        low, high = prop.get("minItems"), prop.get("maxItems")
        width = int(high) if high is not None and low == high else -1
        return TensorSpec(
            name, datatype, (-1, width), optional, TEXT if datatype == BYTES else None
        )
    if kind is None and "enum" in prop:
        kind = "string"
    datatype = _SCALARS.get(str(kind))
    if datatype is None:
        return TensorSpec(name, BYTES, (-1,), optional, JSON)
    return TensorSpec(name, datatype, (-1,), optional, TEXT if datatype == BYTES else None)


class Signatures:
    """Each served version's signature, derived once per instance.

    A composite's inputs depend on its components' production versions, so its entry is
    keyed by those too and a promotion of a component is seen with the snapshot."""

    MAX_KEPT = 64

    def __init__(self, snapshots: SnapshotCache, pool: ModelPool) -> None:
        self._snapshots = snapshots
        self._pool = pool
        self._kept: dict[tuple[str, ...], Signature] = {}
        self._lock = threading.Lock()

    def of(self, record: ModelVersion) -> Signature:
        schema = record.input_schema or runtime_class(record.kind).input_schema()
        components = self._components(record, schema)
        key = (
            record.model_id,
            record.version,
            record.artifact_sha256,
            *(f"{role}={r.model_id}@{r.version}" for role, r in sorted(components.items())),
        )
        with self._lock:
            found = self._kept.get(key)
        if found is not None:
            return found
        nested = {
            role: r.input_schema or runtime_class(r.kind).input_schema()
            for role, r in components.items()
        }
        expected = [
            g["expected"]
            for g in record.golden_set
            if isinstance(g, dict) and isinstance(g.get("expected"), dict)
        ]
        signature = Signature(
            tuple(input_specs(schema, nested)),
            tuple(output_specs([e for e in expected if isinstance(e, dict)])),
        )
        with self._lock:
            if len(self._kept) >= self.MAX_KEPT:
                self._kept.clear()
            self._kept[key] = signature
        return signature

    def _components(
        self, record: ModelVersion, schema: Mapping[str, Any]
    ) -> dict[str, ModelVersion]:
        """The production record of each component an open object field goes to; loads
        the composite (it names its components) only when its schema has such a field."""
        if not any(_is_open(p) for p in schema.get("properties", {}).values()):
            return {}
        roles = self._pool.get(record).runtime.components()
        found: dict[str, ModelVersion] = {}
        for role, model_id in roles.items():
            production = self._snapshots.get(model_id).production
            if production is not None:
                found[role] = production
        return found


def _is_open(prop: Mapping[str, Any]) -> bool:
    return prop.get("type") == "object" and not prop.get("properties")
