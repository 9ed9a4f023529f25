"""The embedded state is the service account's alone: folders 0700, files 0600, whatever
the umask, and a looser folder or file found at start is tightened with a warning."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.backends import build_backends
from common.core.config import Settings
from tools.local import ensure_local_secrets


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away, so only the code's own modes protect the files."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def settings_for(tmp_path: Path) -> Settings:
    return Settings.from_environ(
        {"IPO_DATA_DIR": str(tmp_path / "data"), "IPO_ENV_FILE": str(tmp_path / "dev.env")}
    )


@contextmanager
def every_backend_used(settings: Settings) -> Iterator[None]:
    """Each embedded backend has written; the store stays open (its -wal and -shm files
    exist only while it is)."""
    backends = build_backends(settings)
    try:
        backends.documents.set("things", "one", {"value": 1})
        backends.artifacts.put("reports/drift/a.html", b"<p>report</p>", overwrite=True)
        backends.keys.wrap(b"k" * 32, context=b"test")
        yield
    finally:
        backends.close()


def test_a_fresh_data_folder_is_private(tmp_path: Path, open_umask: None) -> None:
    settings = settings_for(tmp_path)
    data = tmp_path / "data"
    with every_backend_used(settings):
        folders = [data, *(p for p in data.rglob("*") if p.is_dir())]
        files = [p for p in data.rglob("*") if p.is_file()]
        folder_modes = {f"{p.relative_to(data)} {mode(p):04o}" for p in folders}
        file_modes = {f"{p.relative_to(data)} {mode(p):04o}" for p in files}
    assert {p.name for p in files} >= {"ipo.sqlite3", "ipo.sqlite3-wal", "ipo.sqlite3-shm"}
    assert {p.name for p in files} >= {"a.html", "wrapping.key"}
    assert {p.relative_to(data).as_posix() for p in folders} >= {
        ".",
        "artifacts",
        "artifacts/reports/drift",
        "keys",
    }
    assert folder_modes == {f"{p.relative_to(data)} 0700" for p in folders}
    assert file_modes == {f"{p.relative_to(data)} 0600" for p in files}


def test_a_fresh_env_file_is_private(tmp_path: Path, open_umask: None) -> None:
    settings = settings_for(tmp_path)
    assert ensure_local_secrets(settings)
    assert mode(tmp_path / "dev.env") == 0o600


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_looser_state_is_tightened_at_start_and_said_so(tmp_path: Path, open_umask: None) -> None:
    settings = settings_for(tmp_path)
    ensure_local_secrets(settings)
    data = tmp_path / "data"
    with every_backend_used(settings):
        pass
    (data / "ipo.sqlite3-wal").write_bytes(b"")  # as a crash leaves it
    loosened = [data, data / "ipo.sqlite3", data / "ipo.sqlite3-wal", tmp_path / "dev.env"]
    for path in loosened:
        path.chmod(0o755 if path.is_dir() else 0o644)
    warnings = Warnings()
    logger = logging.getLogger("ipo.backends.files")
    logger.addHandler(warnings)
    logger.setLevel(logging.WARNING)
    try:
        with every_backend_used(settings):
            ensure_local_secrets(settings)
            assert mode(data) == 0o700
            assert [mode(p) for p in loosened[1:]] == [0o600, 0o600, 0o600]
    finally:
        logger.removeHandler(warnings)
        logger.setLevel(logging.NOTSET)
    warned = " ".join(warnings.messages)
    for path in loosened:
        assert f"tightened {path} from mode" in warned


def test_a_folder_holding_no_backend_state_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    settings = Settings.from_environ(
        {
            "IPO_DATA_DIR": str(shared),
            "IPO_SQLITE_PATH": str(tmp_path / "db" / "ipo.sqlite3"),
            "IPO_ARTIFACT_DIR": str(tmp_path / "artifacts"),
            "IPO_KEY_FILE": str(tmp_path / "keys" / "wrapping.key"),
        }
    )
    with every_backend_used(settings):
        pass
    assert mode(shared) == 0o755
    assert mode(tmp_path / "db") == 0o700
    assert mode(tmp_path / "db" / "ipo.sqlite3") == 0o600
