"""Data keys wrapped under a key-encryption key kept in a local file.

The embedded stand-in for Cloud KMS: the same AES-GCM wrapping with the context as
associated data, so code that works here behaves the same in the cloud. The key file is
created on first use with owner-only permissions and is refused if anyone else could
read it, since whoever holds it can open every sealed record.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.backends.base import KeyWrapper
from common.backends.local_files import make_private_folder
from common.core.errors import IntegrityError, UnavailableError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = b"\x01"
AAD_PREFIX = b"ipo-key-wrap:v1|"
WRAPPED_BYTES = len(VERSION) + NONCE_BYTES + KEY_BYTES + TAG_BYTES


def check_data_key(data_key: bytes) -> None:
    """Data keys are AES-256 keys; anything else is a caller's mistake."""
    if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
        raise ValueError(f"a data key must be {KEY_BYTES} bytes")


class LocalKeyWrapper(KeyWrapper):
    """AES-256-GCM key wrapping under a 32-byte key read (or created) from ``path``."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._aead: AESGCM | None = None
        self._key_id: str | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def key_id(self) -> str:  # type: ignore[override]
        """``local:`` plus a fingerprint of the key, so a record names the key it needs."""
        self._load()
        if self._key_id is None:
            raise RuntimeError("the wrapping key did not load")
        return self._key_id

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        check_data_key(data_key)
        nonce = secrets.token_bytes(NONCE_BYTES)
        return VERSION + nonce + self._load().encrypt(nonce, data_key, AAD_PREFIX + context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        aead = self._load()
        if (
            not isinstance(wrapped, bytes)
            or len(wrapped) != WRAPPED_BYTES
            or wrapped[:1] != VERSION
        ):
            raise IntegrityError(
                "wrapped data key failed authentication: malformed or unknown version"
            )
        nonce, ciphertext = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
        try:
            return aead.decrypt(nonce, ciphertext, AAD_PREFIX + context)
        except InvalidTag:
            raise IntegrityError(
                "wrapped data key failed authentication: it was altered, belongs to another "
                f"record, or was wrapped under a key other than {self._key_id}"
            ) from None

    def _load(self) -> AESGCM:
        """Read once, on first use: constructing the wrapper touches no file."""
        with self._lock:
            if self._aead is None:
                kek = self._read() if self._path.exists() else self._create()
                self._key_id = "local:" + hashlib.sha256(kek).hexdigest()[:16]
                self._aead = AESGCM(kek)
            return self._aead

    def _read(self) -> bytes:
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except OSError as exc:
            raise UnavailableError(f"key file {self._path} cannot be opened: {exc}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnavailableError(f"key file {self._path} is not a regular file")
            if info.st_mode & 0o077:
                raise UnavailableError(
                    f"key file {self._path} is readable by group or others (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}); restrict it with: chmod 600 {self._path}"
                )
            data = os.read(fd, KEY_BYTES + 1)
        except OSError as exc:
            raise UnavailableError(f"key file {self._path} cannot be read: {exc}") from None
        finally:
            os.close(fd)
        if len(data) != KEY_BYTES:
            raise UnavailableError(
                f"key file {self._path} holds {info.st_size} bytes, not {KEY_BYTES}: restore the "
                "original file; only if nothing was ever sealed with it, delete it and a new "
                "key is created on next use"
            )
        return data

    def _create(self) -> bytes:
        """Write a fresh key beside the target, then link it into place.

        The link fails if the file exists, so of two processes racing to create the key
        exactly one wins and the other reads the winner's key; a reader never sees a
        half-written file.
        """
        parent = self._path.parent
        staging = parent / f".{self._path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        kek = secrets.token_bytes(KEY_BYTES)
        try:
            make_private_folder(parent)
            fd = os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
                os.write(fd, kek)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(staging, self._path)
            except FileExistsError:
                return self._read()
            finally:
                staging.unlink(missing_ok=True)
            _fsync_dir(parent)
        except OSError as exc:
            raise UnavailableError(
                f"key file {self._path} cannot be created: {exc}; make {parent} writable "
                "or set IPO_KEY_FILE"
            ) from None
        return kek


def _fsync_dir(path: Path) -> None:
    """Make the new directory entry durable; best effort where directories can't be synced."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
