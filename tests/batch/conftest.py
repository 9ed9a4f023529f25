"""One embedded stack per module with the risk model in production, shards of 4 rows,
and no work done by the submitting call unless a test asks for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from common.backends.base import ArtifactStore
from common.batch.jobs import BatchJobs
from common.batch.spec import BatchJobRequest
from common.security.auth import Principal
from tests.support.fixtures import Stack, embedded_stack, register_risk, trained_risk

SUBMITTER = Principal("analyst", frozenset({"batch:submit", "model:risk:predict"}))


@pytest.fixture(scope="module")
def batch_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = embedded_stack(
        tmp_path_factory.mktemp("batch"),
        IPO_BATCH_SHARD_ROWS="4",
        IPO_BATCH_SUBMIT_BUDGET_S="0",
    )
    register_risk(stack.lifecycle)
    try:
        yield stack
    finally:
        stack.services.close()


def companies(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` valid risk instances, each with a ``ticker`` naming it."""
    example = trained_risk().example
    return [
        {**example, "revenue_musd": 50.0 + i, "ticker": f"T{i:05d}"}
        for i in range(start, start + n)
    ]


def jsonl(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def put_input(artifacts: ArtifactStore, key: str, rows: list[Any]) -> str:
    artifacts.put(key, jsonl(rows))
    return key


def submit(stack: Stack, principal: Principal = SUBMITTER, **body: Any) -> dict[str, Any]:
    request = BatchJobRequest.model_validate({"model": "risk", "stage": "production", **body})
    return BatchJobs(stack.services).submit(request, principal)


def read_outputs(artifacts: ArtifactStore, prefix: str, what: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for info in artifacts.list(f"{prefix}{what}-")
        for line in artifacts.get(info.key).splitlines()
    ]
