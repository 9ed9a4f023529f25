"""What only the local folder promises: no partial files, clear errors on a bad root."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.backends.local_artifacts import LocalArtifactStore
from common.core.errors import ConflictError, NotFoundError, UnavailableError


def test_files_live_under_the_root_and_no_temporaries_remain(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    info = store.put("a/b/c.bin", b"data")
    store.put("a/b/c.bin", b"more", overwrite=True)
    with pytest.raises(ConflictError):
        store.put("a/b/c.bin", b"again")
    assert (tmp_path / "root" / "a" / "b" / "c.bin").read_bytes() == b"more"
    assert info.uri == (tmp_path / "root" / "a" / "b" / "c.bin").as_uri()
    leftovers = [p.name for p in (tmp_path / "root").rglob("*") if p.is_file()]
    assert leftovers == ["c.bin"]


def test_key_under_an_existing_artifact_conflicts(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put("a", b"file")
    with pytest.raises(ConflictError, match="prefix"):
        store.put("a/b", b"x")
    store.put("d/e", b"x")
    with pytest.raises(ConflictError):
        store.put("d", b"x")
    with pytest.raises(ConflictError):
        store.put("d", b"x", overwrite=True)
    with pytest.raises(NotFoundError):
        store.get("d")
    with pytest.raises(NotFoundError):
        store.get("a/b")


def test_root_under_a_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = LocalArtifactStore(blocker / "artifacts")
    with pytest.raises(UnavailableError, match="artifact folder") as info:
        store.put("x", b"data")
    assert info.value.status == 503
    assert not store.exists("x")
