"""From a request to a job: the version it serves and the shards of its input.

The version is fixed at submission (a stage resolved then, an ensemble's components at
their production versions then) and recorded, so every shard of the job predicts with the
same models. The input files are read once here to cut them into shards of
``batch_shard_rows`` non-blank lines, each a byte range a worker reads alone.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from typing import Any

from common.backends.base import ArtifactInfo, ArtifactStore
from common.batch.spec import BatchJobRequest, Shard, has_glob
from common.core.errors import ConflictError, InvalidValuesError
from common.promotion.lifecycle import Lifecycle
from common.registry.records import ModelVersion, Registry
from common.serving.pool import ModelPool

MAX_FILES = 1000
MAX_SHARDS = 5000
"""A job's plan is held in its record (a Firestore document holds at most 1 MiB), so a
larger input gets larger shards rather than more of them."""


def _refused(field: str, rule: str, message: str, **extra: Any) -> InvalidValuesError:
    detail = {"field": field, "path": [field], "rule": rule, "message": message, **extra}
    return InvalidValuesError(f"{field}: {message}", details=[detail])


@dataclass(frozen=True)
class Served:
    record: ModelVersion
    components: dict[str, dict[str, str]]


def resolve_version(
    request: BatchJobRequest, registry: Registry, lifecycle: Lifecycle, pool: ModelPool
) -> Served:
    """The version the job serves: the stage's now, or the named one if it may serve
    (production, or staging passing what a canary passes: Lifecycle.serving_problems)."""
    if request.stage is not None:
        model = registry.get_model(request.model)
        if model.production_version is None:
            raise _refused(
                "stage", "no_production_version", f"model {request.model!r} has none; promote one"
            )
        record = registry.get_version(request.model, model.production_version)
    else:
        record = registry.get_version(request.model, str(request.version))
        if record.stage == "staging":
            problems = lifecycle.serving_problems(record)
            if problems:
                raise InvalidValuesError(
                    f"{request.model} {record.version} is in staging and fails "
                    f"{len(problems)} criteria a serving version must pass",
                    details=[{"field": "version", "path": ["version"], **p} for p in problems],
                )
        elif record.stage != "production":
            raise _refused(
                "version",
                "not_serving",
                f"{request.model} {record.version} is {record.stage}; only a production "
                "version, or a staging one passing its gate and verification, may serve",
                value=record.version,
            )
    components = {}
    for role, component_id in pool.get(record).runtime.components().items():
        production = registry.get_model(component_id).production_version
        if production is None:
            raise ConflictError(
                f"component model {component_id!r} of {request.model} has no production version"
            )
        components[role] = {"model_id": component_id, "version": production}
    return Served(record, components)


def input_files(artifacts: ArtifactStore, key: str) -> list[ArtifactInfo]:
    """The objects ``key`` names: itself, the keys under a prefix ending in ``/``, or
    the keys a glob matches segment by segment (``*`` never crosses a ``/``)."""
    if has_glob(key):
        literal = key[: min(key.index(c) for c in "*?[" if c in key)]
        pattern = key.split("/")
        found = [
            info
            for info in artifacts.list(literal)
            if len(parts := info.key.split("/")) == len(pattern)
            and all(fnmatch.fnmatchcase(p, g) for p, g in zip(parts, pattern, strict=True))
        ]
    elif key.endswith("/"):
        found = artifacts.list(key)
    else:
        found = [info for info in artifacts.list(key) if info.key == key]
    if not found:
        raise _refused("input_uri", "no_input", f"{key} names no object in the artifact store")
    if len(found) > MAX_FILES:
        raise _refused(
            "input_uri", "too_many_files", f"{key} names {len(found)} objects; at most {MAX_FILES}"
        )
    return found


def shards_of(source: str, data: bytes, shard_rows: int) -> list[Shard]:
    """``data`` cut every ``shard_rows`` non-blank lines; line numbers start at 1."""
    shards = []
    pos, line, rows, start, first = 0, 0, 0, 0, 1
    size = len(data)
    while pos < size:
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline + 1
        line += 1
        if not data[pos:end].isspace():
            if rows == 0:
                start, first = pos, line
            rows += 1
            if rows == shard_rows:
                shards.append(
                    Shard(source=source, start=start, end=end, first_line=first, rows=rows)
                )
                rows = 0
        pos = end
    if rows:
        shards.append(Shard(source=source, start=start, end=size, first_line=first, rows=rows))
    return shards


def plan(
    artifacts: ArtifactStore, files: list[ArtifactInfo], shard_rows: int
) -> tuple[list[Shard], int]:
    """Every file's shards, and the rows they hold; shards grow past ``shard_rows`` when
    the input would need more than MAX_SHARDS."""
    contents = [(f.key, artifacts.get(f.key)) for f in files]
    most_lines = sum(data.count(b"\n") + 1 for _, data in contents)
    rows_each = max(shard_rows, math.ceil(most_lines / MAX_SHARDS))
    shards = [shard for key, data in contents for shard in shards_of(key, data, rows_each)]
    rows = sum(s.rows for s in shards)
    if rows == 0:
        raise _refused("input_uri", "no_rows", "the input holds no non-blank line")
    return shards, rows


def encode_plan(shards: list[Shard], files: list[str]) -> str:
    """Compact JSON: a store holds nested arrays in a string, not as an array."""
    index = {key: i for i, key in enumerate(files)}
    return json.dumps(
        [[index[s.source], s.start, s.end, s.first_line, s.rows] for s in shards],
        separators=(",", ":"),
    )
