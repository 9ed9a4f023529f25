"""The loaded-model pool: verify before deserialising, load once, evict least recent."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from common.core.errors import IntegrityError
from common.serving.pool import ModelPool
from tests.support.fixtures import Stack, malicious_artifact, register_risk


def test_hash_mismatch_never_reaches_the_deserialiser(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    from common.models import artifacts, risk

    real_load = artifacts.joblib_load
    real_parse = risk.json_or_joblib
    monkeypatch.setattr(artifacts, "joblib_load", lambda data: calls.append(1) or real_load(data))
    monkeypatch.setattr(risk, "json_or_joblib", lambda data: calls.append(1) or real_parse(data))
    record = stack.registry.get_version("risk", "1.0.0")
    marker = tmp_path / "side-effect"
    path = stack.settings.resolved_artifact_dir / record.artifact_key
    path.chmod(0o644)
    path.write_bytes(malicious_artifact(marker))

    pool = ModelPool(stack.registry, size=2)
    with pytest.raises(IntegrityError):
        pool.get(record)
    assert calls == []
    assert not marker.exists()
    assert len(pool) == 0


def test_concurrent_gets_load_once(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real_read = stack.registry.read_artifact

    def counting_read(record: Any) -> bytes:
        reads.append(1)
        return real_read(record)

    monkeypatch.setattr(stack.registry, "read_artifact", counting_read)
    pool = ModelPool(stack.registry, size=2)
    record = stack.registry.get_version("risk", "1.0.0")
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(pool.get(record))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reads) == 1
    assert len({id(r) for r in results}) == 1


def test_least_recently_used_is_evicted(stack: Stack) -> None:
    for version in ("1.0.1", "1.0.2"):
        register_risk(stack.lifecycle, version, promote=False)
    pool = ModelPool(stack.registry, size=2)
    v100, v101, v102 = (stack.registry.get_version("risk", v) for v in ("1.0.0", "1.0.1", "1.0.2"))
    first = pool.get(v100)
    pool.get(v101)
    pool.get(v100)  # 1.0.1 is now the least recent
    pool.get(v102)
    assert len(pool) == 2
    assert pool.get(v100) is first
