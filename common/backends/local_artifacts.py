"""Artifacts as files under one folder: never half-written, never silently replaced.

Each put writes a temporary file beside its target and fsyncs it, then publishes it in
one step: ``os.link`` when the key must be new (the kernel refuses an existing name, so
of two racing writers exactly one wins) or ``os.replace`` when overwriting. Readers see
the old bytes or the new bytes, never a mixture. Files are 0600 (``mkstemp``) and the
folders the store makes 0700, so only the service's account reads a model or a report.

The store makes no symbolic links, so it follows none: a key whose path, once links are
resolved, is not exactly that key under the root (a link planted in the folder, to
``.env``, the key file or anywhere else) does not exist for get, exists and uri, and is
refused by put. A key that names anything but a regular file (a folder, a FIFO) is not
an artifact either.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from common.backends.base import (
    ArtifactInfo,
    ArtifactStore,
    check_artifact_key,
    check_artifact_prefix,
)
from common.backends.local_files import make_private_folder
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

    def _unlinked(self, key: str) -> Path | None:
        """The key's path if no symbolic link below the root leads it elsewhere, else None."""
        path = self._path(key)
        try:
            real_root = self._root.resolve()
            followed = path.resolve()
        except (OSError, RuntimeError):  # a loop of links
            return None
        return path if followed == real_root.joinpath(*key.split("/")) else None

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> ArtifactInfo:
        target = self._path(key)
        data = bytes(data)
        try:
            make_private_folder(self._root)
        except OSError as exc:
            raise self._unavailable(exc) from None
        if self._unlinked(key) is None:
            raise ConflictError(f"artifact key {key!r} leads through a symbolic link")
        try:
            make_private_folder(target.parent)
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

    def _open_regular(self, key: str) -> int:
        """A read-only descriptor of the regular file behind ``key``, in blocking mode; the
        caller closes it. NotFoundError for a missing key, a link or anything not a file."""
        missing = NotFoundError(f"artifact {key!r} does not exist")
        path = self._unlinked(key)
        if path is None:
            raise missing
        try:
            # O_NOFOLLOW: a link swapped in after the check is refused, not followed;
            # O_NONBLOCK: opening a FIFO returns at once (and fstat refuses it).
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise missing from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise missing from None
            raise self._unavailable(exc) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise missing
            os.set_blocking(fd, True)
        except OSError as exc:
            os.close(fd)
            raise self._unavailable(exc) from None
        except NotFoundError:
            os.close(fd)
            raise
        return fd

    def get(self, key: str) -> bytes:
        fd = self._open_regular(key)
        try:
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read()
        except OSError as exc:
            raise self._unavailable(exc) from None
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        path = self._unlinked(key)
        try:
            return path is not None and path.is_file()
        except OSError as exc:
            raise self._unavailable(exc) from None

    def read_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range {start}..{end}")
        fd = self._open_regular(key)
        try:
            return os.pread(fd, end - start, start)
        except OSError as exc:
            raise self._unavailable(exc) from None
        finally:
            os.close(fd)

    def list(self, prefix: str) -> list[ArtifactInfo]:
        check_artifact_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        base = self._root.joinpath(*folder.split("/")) if folder else self._root
        found = []
        try:
            real_root = self._root.resolve()
            if not base.is_dir() or base.resolve() != real_root.joinpath(
                *base.relative_to(self._root).parts
            ):
                return []
            for dirpath, dirnames, filenames in os.walk(base):  # never follows links
                here = Path(dirpath)
                dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
                for name in filenames:
                    path = here / name
                    key = path.relative_to(self._root).as_posix()
                    if name.startswith(_TMP_PREFIX) or not key.startswith(prefix):
                        continue
                    info = path.lstat()
                    if stat.S_ISREG(info.st_mode):
                        found.append(
                            ArtifactInfo(key=key, uri=path.as_uri(), sha256="", size=info.st_size)
                        )
        except OSError as exc:
            raise self._unavailable(exc) from None
        return sorted(found, key=lambda a: a.key)

    def uri(self, key: str) -> str:
        path = self._unlinked(key)
        if path is None:
            raise NotFoundError(f"artifact {key!r} leads through a symbolic link")
        return path.as_uri()

    def _unavailable(self, exc: OSError) -> UnavailableError:
        return UnavailableError(
            f"artifact folder {self._root} is unavailable: {exc.strerror or exc}"
        )
