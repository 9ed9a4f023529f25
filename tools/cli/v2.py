"""``ipoctl predict --protocol v2``: the same instances sent as Open Inference Protocol
tensors, so the v2 routes can be tried from a shell without writing tensors by hand.

The model's metadata (``GET /v2/models/{model}``) names its inputs; each row's fields
become one column per input, a field a row leaves out a null (allowed only for an optional
input). The answer prints one line per output, one column per instance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from tools.cli import output as out
from tools.cli.client import Answer, Client, UsageError


def _lookup(row: Mapping[str, Any], dotted: str) -> Any:
    value: Any = row
    for key in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def request_body(metadata: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """The v2 request for a ``{"instances": [...], "parameters": {...}}`` body."""
    rows = [r for r in body.get("instances", []) if isinstance(r, Mapping)]
    if not rows:
        raise UsageError("no instances to send")
    inputs = []
    for spec in metadata.get("inputs", []):
        name, shape = spec["name"], spec["shape"]
        values = [_lookup(row, name) for row in rows]
        if all(v is None for v in values):
            continue
        json_text = (spec.get("parameters") or {}).get("content_type") == "json"
        if json_text:
            values = [None if v is None else json.dumps(v) for v in values]
        if len(shape) == 2:
            widths = {len(v) for v in values if isinstance(v, list)}
            if len(widths) != 1 or any(not isinstance(v, list) for v in values):
                raise UsageError(
                    f"{name}: every instance must give a list of one length to send it as "
                    "one tensor; send instances of different lengths separately"
                )
            width = widths.pop()
            data = [x for v in values for x in v]
            inputs.append(
                {
                    "name": name,
                    "shape": [len(rows), width],
                    "datatype": spec["datatype"],
                    "data": data,
                }
            )
        else:
            inputs.append(
                {"name": name, "shape": [len(rows)], "datatype": spec["datatype"], "data": values}
            )
    known = {spec["name"].split(".")[0] for spec in metadata.get("inputs", [])}
    unknown = sorted({key for row in rows for key in row} - known)
    if unknown:
        raise UsageError(f"fields the model has no input for: {', '.join(unknown)}")
    request: dict[str, Any] = {"inputs": inputs}
    if body.get("parameters"):
        request["parameters"] = body["parameters"]
    return request


def predict(client: Client, model: str, body: Mapping[str, Any]) -> Answer:
    path = f"/v2/models/{quote(model, safe='')}"
    metadata = client.call("GET", path)
    return client.call("POST", f"{path}/infer", request_body(metadata.data, body))


def rows_of(outputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per row, output names as keys (JSON outputs parsed, padding dropped)."""
    count = max((o["shape"][0] for o in outputs if o.get("shape")), default=0)
    rows: list[dict[str, Any]] = [{} for _ in range(count)]
    for o in outputs:
        shape, data = o["shape"], o["data"]
        json_text = (o.get("parameters") or {}).get("content_type") == "json"
        for i, row in enumerate(rows):
            if len(shape) == 2:
                value: Any = [x for x in data[i * shape[1] : (i + 1) * shape[1]] if x is not None]
            else:
                value = data[i]
                if json_text and isinstance(value, str):
                    value = json.loads(value)
            row[o["name"]] = value
    return rows


def answer(data: Mapping[str, Any]) -> str:
    parameters = data.get("parameters") or {}
    head = out.pairs(
        [
            ("model", data.get("model_name")),
            ("version", data.get("model_version")),
            ("variant", parameters.get("variant")),
            ("experiment", parameters.get("experiment_id")),
            *([("exposure id", parameters["exposure_id"])] if "exposure_id" in parameters else []),
            ("cache hit", parameters.get("cache_hit")),
            ("id", data.get("id")),
        ]
    )
    rows = rows_of(data.get("outputs") or [])
    if not rows:
        return head
    table_rows = [
        (
            name,
            *(out.nested(r[name]) if isinstance(r[name], dict | list) else r[name] for r in rows),
        )
        for name in rows[0]
    ]
    return head + "\n\n" + out.table(("OUTPUT", *(f"#{i}" for i in range(len(rows)))), table_rows)
