"""Registry core: immutable versions, content-addressed artifacts, the production pointer."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from common.core.errors import ConflictError, InvalidValuesError
from common.promotion.lifecycle import Lifecycle
from common.registry.records import Registry, version_key
from tests.support.fixtures import Stack, embedded_stack, register_risk, trained_risk


@pytest.fixture
def lifecycle(tmp_path: Path) -> Lifecycle:
    return embedded_stack(tmp_path).lifecycle


@pytest.fixture
def registry(lifecycle: Lifecycle) -> Registry:
    return lifecycle.registry


def test_register_records_everything(registry: Registry, lifecycle: Lifecycle) -> None:
    record = register_risk(lifecycle, promote=False)
    artifact = trained_risk().artifact
    assert record.artifact_sha256 == hashlib.sha256(artifact).hexdigest()
    assert record.artifact_size == len(artifact)
    assert record.artifact_key.endswith(record.artifact_sha256)
    assert record.created_by == "tests"
    assert record.created_at.endswith("Z")
    assert record.metrics["accuracy"] > 0.5
    assert record.input_schema["type"] == "object"
    assert registry.get_version("risk", "1.0.0") == record
    model = registry.get_model("risk")
    assert model.kind == "risk"
    assert model.production_version is None
    assert model.generation == 0


def test_registering_an_existing_version_is_409_and_changes_nothing(
    registry: Registry, lifecycle: Lifecycle
) -> None:
    first = register_risk(lifecycle, promote=False)
    with pytest.raises(ConflictError):
        registry.register(
            model_id="risk",
            version="1.0.0",
            kind="risk",
            artifact=b"other bytes",
            created_by="someone-else",
        )
    assert registry.get_version("risk", "1.0.0") == first


def test_concurrent_registrations_of_one_version_one_wins(registry: Registry) -> None:
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        try:
            registry.register(
                model_id="risk",
                version="2.0.0",
                kind="risk",
                artifact=trained_risk().artifact,
                created_by=f"writer-{n}",
            )
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"]


def test_same_bytes_under_two_versions_share_one_artifact(
    registry: Registry, lifecycle: Lifecycle
) -> None:
    a = register_risk(lifecycle, "1.0.0", promote=False)
    b = register_risk(lifecycle, "1.0.1", promote=False)
    assert a.artifact_key == b.artifact_key


def test_a_model_keeps_its_kind(registry: Registry, lifecycle: Lifecycle) -> None:
    register_risk(lifecycle, promote=False)
    with pytest.raises(ConflictError, match="kind"):
        registry.register(
            model_id="risk", version="9.0.0", kind="dcf", artifact=b"x", created_by="t"
        )


@pytest.mark.parametrize("version", ["1", "1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0+build"])
def test_versions_must_be_semantic(registry: Registry, version: str) -> None:
    with pytest.raises(InvalidValuesError, match="semantic"):
        registry.register(
            model_id="risk", version=version, kind="risk", artifact=b"x", created_by="t"
        )


@pytest.mark.parametrize("model_id", ["Risk", "1risk", "risk_model", "", "a" * 64, "../x"])
def test_model_ids_are_checked(registry: Registry, model_id: str) -> None:
    with pytest.raises(InvalidValuesError):
        registry.register(
            model_id=model_id, version="1.0.0", kind="risk", artifact=b"x", created_by="t"
        )


def test_semantic_order() -> None:
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.9"]
    assert sorted(versions, key=version_key) == ["0.9.9", "1.2.0-rc.1", "1.2.0", "1.10.0"]


def test_read_artifact_refuses_bytes_that_do_not_match(stack: Stack) -> None:
    from common.core.errors import IntegrityError

    record = stack.registry.get_version("risk", "1.0.0")
    assert stack.registry.read_artifact(record) == trained_risk().artifact
    path = stack.settings.resolved_artifact_dir / record.artifact_key
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        stack.registry.read_artifact(record)
