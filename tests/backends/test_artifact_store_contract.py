"""One contract for every ArtifactStore: the local folder and Cloud Storage (fake-gcs-server)."""

from __future__ import annotations

import hashlib
import threading

import pytest

from common.backends.base import ArtifactStore
from common.core.errors import ConflictError, NotFoundError

BLOB = b"\x00model bytes\xff" * 1000


def test_put_then_get(artifact_store: ArtifactStore) -> None:
    info = artifact_store.put("models/risk/1/model.joblib", BLOB)
    assert info.key == "models/risk/1/model.joblib"
    assert info.sha256 == hashlib.sha256(BLOB).hexdigest()
    assert info.size == len(BLOB)
    assert info.uri == artifact_store.uri(info.key)
    assert info.uri.startswith(("file://", "gs://"))
    assert info.uri.endswith("/models/risk/1/model.joblib")
    assert artifact_store.get(info.key) == BLOB


def test_empty_artifact(artifact_store: ArtifactStore) -> None:
    info = artifact_store.put("empty", b"")
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(b"").hexdigest()
    assert artifact_store.get("empty") == b""


def test_exists(artifact_store: ArtifactStore) -> None:
    assert not artifact_store.exists("a/b")
    artifact_store.put("a/b", b"x")
    assert artifact_store.exists("a/b")
    assert not artifact_store.exists("a")


def test_get_missing_is_not_found(artifact_store: ArtifactStore) -> None:
    with pytest.raises(NotFoundError, match="missing/key"):
        artifact_store.get("missing/key")


def test_put_existing_conflicts_and_keeps_bytes(artifact_store: ArtifactStore) -> None:
    artifact_store.put("k", b"first")
    with pytest.raises(ConflictError):
        artifact_store.put("k", b"second")
    assert artifact_store.get("k") == b"first"


def test_overwrite_replaces(artifact_store: ArtifactStore) -> None:
    artifact_store.put("k", b"first")
    info = artifact_store.put("k", b"second", overwrite=True)
    assert info.sha256 == hashlib.sha256(b"second").hexdigest()
    assert artifact_store.get("k") == b"second"
    artifact_store.put("fresh", b"new", overwrite=True)
    assert artifact_store.get("fresh") == b"new"


def test_racing_puts_have_exactly_one_winner(artifact_store: ArtifactStore) -> None:
    contenders = 8
    start = threading.Barrier(contenders)
    won: list[bytes] = []
    lost: list[BaseException] = []

    def put(payload: bytes) -> None:
        start.wait()
        try:
            artifact_store.put("contested", payload)
            won.append(payload)
        except ConflictError as exc:
            lost.append(exc)

    threads = [
        threading.Thread(target=put, args=(f"writer {i}".encode() * 5000,))
        for i in range(contenders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(won) == 1
    assert len(lost) == contenders - 1
    assert artifact_store.get("contested") == won[0]


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "../up", "a/../b", "a/./b", "trailing/", "sp ace", "~tmp"]
)
def test_invalid_keys_are_refused(artifact_store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid artifact key"):
        artifact_store.put(key, b"x")
    with pytest.raises(ValueError, match="invalid artifact key"):
        artifact_store.get(key)
    with pytest.raises(ValueError, match="invalid artifact key"):
        artifact_store.exists(key)


def test_read_range_returns_those_bytes(artifact_store: ArtifactStore) -> None:
    artifact_store.put("batch/in/a.jsonl", b"0123456789")
    assert artifact_store.read_range("batch/in/a.jsonl", 2, 5) == b"234"
    assert artifact_store.read_range("batch/in/a.jsonl", 8, 100) == b"89"
    assert artifact_store.read_range("batch/in/a.jsonl", 10, 20) == b""
    assert artifact_store.read_range("batch/in/a.jsonl", 3, 3) == b""
    with pytest.raises(NotFoundError):
        artifact_store.read_range("batch/in/missing.jsonl", 0, 4)


def test_list_names_the_keys_under_a_prefix_in_order(artifact_store: ArtifactStore) -> None:
    for key in ("batch/in/b.jsonl", "batch/in/a.jsonl", "batch/inner/c.jsonl", "models/m"):
        artifact_store.put(key, b"12345")
    assert [a.key for a in artifact_store.list("batch/in/")] == [
        "batch/in/a.jsonl",
        "batch/in/b.jsonl",
    ]
    assert [a.key for a in artifact_store.list("batch/in")] == [
        "batch/in/a.jsonl",
        "batch/in/b.jsonl",
        "batch/inner/c.jsonl",
    ]
    (first,) = artifact_store.list("batch/in/a")
    assert (first.size, first.uri) == (5, artifact_store.uri("batch/in/a.jsonl"))
    assert artifact_store.list("batch/none/") == []
    with pytest.raises(ValueError, match="invalid artifact key"):
        artifact_store.list("batch/../models/")


def test_sha256_is_the_hash_of_what_is_stored(artifact_store: ArtifactStore) -> None:
    artifact_store.put("models/risk/sha256/x", BLOB)
    artifact_store.put("k", b"first")
    artifact_store.put("k", b"second", overwrite=True)
    assert artifact_store.sha256("models/risk/sha256/x") == hashlib.sha256(BLOB).hexdigest()
    assert artifact_store.sha256("k") == hashlib.sha256(b"second").hexdigest()
    with pytest.raises(NotFoundError):
        artifact_store.sha256("missing/key")
