"""Serving snapshots: no store read per request, propagation within the TTL."""

from __future__ import annotations

from typing import Any

import pytest

from common.core.errors import NotFoundError, UnavailableError
from common.serving.pipeline import PredictRequest, SnapshotCache
from common.serving.predictor import Predictor
from tests.support.fixtures import Stack, register_risk


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_snapshot_is_reused_within_ttl(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    cache = SnapshotCache(stack.registry, ttl_s=10, clock=clock)
    reads: list[str] = []
    real = stack.registry.get_model
    monkeypatch.setattr(stack.registry, "get_model", lambda m: reads.append(m) or real(m))
    for _ in range(50):
        cache.get("risk")
    assert reads == ["risk"]


def test_promotion_is_served_after_the_ttl(stack: Stack) -> None:
    clock = Clock()
    cache = SnapshotCache(stack.registry, ttl_s=10, clock=clock)
    assert cache.get("risk").production.version == "1.0.0"  # type: ignore[union-attr]
    register_risk(stack.lifecycle, "1.1.0")
    clock.now += 9.9
    assert cache.get("risk").production.version == "1.0.0"  # type: ignore[union-attr]
    clock.now += 0.2
    assert cache.get("risk").production.version == "1.1.0"  # type: ignore[union-attr]


def test_unchanged_generation_keeps_the_record(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache = SnapshotCache(stack.registry, ttl_s=1, clock=clock)
    cache.get("risk")
    versions_read: list[Any] = []
    real = stack.registry.get_version
    monkeypatch.setattr(
        stack.registry, "get_version", lambda *a: versions_read.append(a) or real(*a)
    )
    clock.now += 5
    cache.get("risk")
    assert versions_read == []


def test_store_outage_serves_the_last_snapshot(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache = SnapshotCache(stack.registry, ttl_s=30, clock=clock)
    known = cache.get("risk")
    calls: list[str] = []

    def down(model_id: str) -> Any:
        calls.append(model_id)
        raise UnavailableError("store down")

    monkeypatch.setattr(stack.registry, "get_model", down)
    clock.now += 31
    served = cache.get("risk")
    assert (served.production, served.generation) == (known.production, known.generation)
    for _ in range(20):  # within the outage retry delay nobody waits on the store again
        cache.get("risk")
    assert calls == ["risk"]
    clock.now += SnapshotCache.OUTAGE_RETRY_S + 0.1
    cache.get("risk")
    assert calls == ["risk", "risk"]
    with pytest.raises(UnavailableError):
        SnapshotCache(stack.registry, ttl_s=1, clock=clock).get("risk")


def test_predict_response_shape(stack: Stack) -> None:
    example = stack.registry.get_version("risk", "1.0.0").example
    labels: dict[str, Any] = {}
    uncached = Predictor(stack.services.snapshots, stack.services.pool)
    out = uncached.predict(
        "risk", PredictRequest(instances=[example, example]), request_id="r1", labels=labels
    )
    assert out["model_version"] == "1.0.0"
    assert len(out["predictions"]) == 2
    assert labels == {
        "model_id": "risk",
        "model_version": "1.0.0",
        "variant": "production",
        "instances": 2,
    }


def test_names_of_models_that_do_not_exist_leave_nothing_behind(stack: Stack) -> None:
    cache = SnapshotCache(stack.registry, ttl_s=10)
    for i in range(500):
        with pytest.raises(NotFoundError):
            cache.get(f"no-such-model-{i}")
    assert len(cache._locks) == SnapshotCache.LOCKS
    assert cache._snapshots == {}
    assert cache.get("risk").production is not None
