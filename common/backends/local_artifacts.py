"""Artifacts as files under one folder: never half-written, never silently replaced.

Each put writes a temporary file beside its target and fsyncs it, then publishes it in
one step: ``os.link`` when the key must be new (the kernel refuses an existing name, so
of two racing writers exactly one wins) or ``os.replace`` when overwriting. Readers see
the old bytes or the new bytes, never a mixture.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from common.backends.base import ArtifactInfo, ArtifactStore, check_artifact_key
from common.core.errors import ConflictError, NotFoundError, UnavailableError

_TMP_PREFIX = "~put-"
"""``~`` cannot appear in a key, so a temporary file can never be mistaken for one."""


def _fsync_dir(path: Path) -> None:
    """Make the new directory entry durable, not only the file's bytes."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*check_artifact_key(key).split("/"))

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> ArtifactInfo:
        target = self._path(key)
        data = bytes(data)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(exc) from None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConflictError(f"a prefix of artifact key {key!r} is itself an artifact") from None
        except OSError as exc:
            raise self._unavailable(exc) from None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
        except OSError as exc:
            raise self._unavailable(exc) from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)
            _fsync_dir(target.parent)
        except (FileExistsError, IsADirectoryError):
            raise ConflictError(f"artifact {key!r} already exists") from None
        except OSError as exc:
            raise self._unavailable(exc) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return ArtifactInfo(
            key=key, uri=target.as_uri(), sha256=hashlib.sha256(data).hexdigest(), size=len(data)
        )

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"artifact {key!r} does not exist") from None
        except OSError as exc:
            raise self._unavailable(exc) from None

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except OSError as exc:
            raise self._unavailable(exc) from None

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def _unavailable(self, exc: OSError) -> UnavailableError:
        return UnavailableError(
            f"artifact folder {self._root} is unavailable: {exc.strerror or exc}"
        )
