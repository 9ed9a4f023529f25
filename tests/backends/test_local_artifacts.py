"""What only the local folder promises: no partial files, clear errors on a bad root."""

from __future__ import annotations

import os
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


def test_a_symbolic_link_out_of_the_root_is_no_artifact(tmp_path: Path) -> None:
    secret = tmp_path / ".env"
    secret.write_text("IPO_SECRET_JWT_SIGNING_KEY=do-not-serve")
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalArtifactStore(tmp_path / "root")
    store.put("reports/drift/real.html", b"<p>report</p>")
    (tmp_path / "root" / "reports" / "drift" / "env.html").symlink_to(secret)
    (tmp_path / "root" / "escape").symlink_to(outside, target_is_directory=True)
    for key in ("reports/drift/env.html", "escape/x"):
        with pytest.raises(NotFoundError):
            store.get(key)
        assert not store.exists(key)
        with pytest.raises(NotFoundError):
            store.uri(key)
    with pytest.raises(ConflictError, match="symbolic link"):
        store.put("escape/planted", b"data")
    with pytest.raises(ConflictError, match="symbolic link"):
        store.put("reports/drift/env.html", b"data", overwrite=True)
    assert list(outside.iterdir()) == []
    assert secret.read_text() == "IPO_SECRET_JWT_SIGNING_KEY=do-not-serve"
    assert store.get("reports/drift/real.html") == b"<p>report</p>"


def test_a_link_between_two_artifacts_is_refused_too(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put("models/m/sha256/abc", b"model bytes")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "x.html").symlink_to(tmp_path / "models" / "m" / "sha256" / "abc")
    with pytest.raises(NotFoundError):
        store.get("reports/x.html")


def test_a_root_reached_through_a_link_still_works(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    store = LocalArtifactStore(tmp_path / "alias")
    store.put("a/b", b"data")
    assert store.get("a/b") == b"data"
    assert store.exists("a/b")


def test_a_fifo_is_no_artifact_and_reading_it_does_not_block(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NotFoundError):
        store.get("pipe")
    assert not store.exists("pipe")
