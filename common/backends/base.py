"""The seam: small interfaces every backend implements.

Documents are JSON-compatible dicts (str, int, float, bool, None, lists, dicts); times are
RFC 3339 strings in UTC, so they sort as text and read the same on every backend. Field
names are identifiers (``[A-Za-z_][A-Za-z0-9_]*``); a dotted name addresses a nested field
in queries.

Errors: a missing document is ``NotFoundError`` (404), an existing one on create is
``ConflictError`` (409), a stale precondition is ``PreconditionFailedError`` (409), and an
unreachable service is ``UnavailableError`` (503). Nothing else escapes a backend.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

T = TypeVar("T")

FilterOp = Literal["==", "!=", "<", "<=", ">", ">=", "in"]
FILTER_OPS: frozenset[str] = frozenset(("==", "!=", "<", "<=", ">", ">=", "in"))

EXPIRE_AT = "expire_at"
SET_MANY_MAX = 500
"""Documents in one ``set_many``: Firestore's limit on the writes of one commit."""


def rfc3339(moment: datetime) -> str:
    """The one text form of a time in documents: UTC, microseconds, ``Z``; sorts as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


"""The top-level field after whose time a store may delete the document on its own."""

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@:+-]{0,1499}$")


def check_field_path(path: str) -> str:
    if not _FIELD.match(path):
        raise ValueError(f"invalid field path {path!r}")
    return path


def valid_name(name: str) -> bool:
    """Collection names and document ids: no slashes, no dot-only names, bounded."""
    return bool(_NAME.match(name)) and name not in {".", ".."} and not name.startswith("__")


def check_name(kind: str, name: str) -> str:
    if not valid_name(name):
        raise ValueError(f"invalid {kind} {name!r}")
    return name


@dataclass(frozen=True)
class Document:
    id: str
    data: dict[str, Any]
    revision: str
    """Opaque token that changes on every write; pass it back as ``if_revision``."""


@dataclass(frozen=True)
class Filter:
    field: str
    op: FilterOp
    value: Any

    def __post_init__(self) -> None:
        check_field_path(self.field)
        if self.op not in FILTER_OPS:
            raise ValueError(f"unsupported filter operator {self.op!r}")


@dataclass(frozen=True)
class Order:
    field: str
    descending: bool = False

    def __post_init__(self) -> None:
        check_field_path(self.field)


class Transaction(ABC):
    """Reads first, then writes; the whole function is retried on contention."""

    @abstractmethod
    def get(self, collection: str, doc_id: str) -> Document | None: ...

    @abstractmethod
    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        """Fails the transaction with ConflictError if the document exists."""

    @abstractmethod
    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        """Create or replace the whole document."""

    @abstractmethod
    def update(self, collection: str, doc_id: str, changes: dict[str, Any]) -> None:
        """Replace the named top-level fields; NotFoundError if the document is absent."""

    @abstractmethod
    def delete(self, collection: str, doc_id: str) -> None: ...


class DocumentStore(ABC):
    """Documents in named collections, under the contract in this module's docstring.

    Expiry: a top-level field named ``expire_at`` (``EXPIRE_AT``) holds the time after
    which the store may delete the document on its own. Its value is a time in the one text
    form documents use, as ``rfc3339`` above writes it (``YYYY-MM-DDTHH:MM:SS.ffffffZ``:
    UTC, six fraction digits), so it survives a Timestamp exactly; any other value there,
    on any write or as a filter value on ``expire_at``, is a ``ValueError``. Callers read
    back the very string they wrote, and filter and order on it as on any other time.
    Firestore holds it as a Timestamp, so a TTL policy on the field deletes the document
    some time after it (typically within a day, never before); SQLite holds the string as
    is and deletes nothing on its own, leaving that to the scheduled jobs
    (``purge_retention``). Readers must not count on an expired document being gone.
    A field of that name inside a map is an ordinary field.
    """

    @abstractmethod
    def get(self, collection: str, doc_id: str) -> Document | None: ...

    @abstractmethod
    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> Document:
        """Create if absent; ConflictError if the id is taken."""

    @abstractmethod
    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> Document:
        """Create or replace the whole document."""

    @abstractmethod
    def update(
        self,
        collection: str,
        doc_id: str,
        changes: dict[str, Any],
        *,
        if_revision: str | None = None,
    ) -> Document:
        """Replace the named top-level fields.

        With ``if_revision``, the write happens only if the document still has that
        revision (PreconditionFailedError otherwise). NotFoundError if absent.
        """

    @abstractmethod
    def delete(self, collection: str, doc_id: str, *, if_revision: str | None = None) -> None:
        """Remove a document; deleting an absent document is not an error."""

    @abstractmethod
    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
    ) -> list[Document]: ...

    @abstractmethod
    def set_many(self, documents: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Create or replace each (collection, id, data) in one atomic write that reads
        nothing: all are written or none.

        For writes that depend on no read, such as an audit batch: Firestore commits them
        in one round trip, where a transaction takes two (begin, then commit). At most
        ``SET_MANY_MAX`` documents, each named once; ValueError otherwise, or for a
        document the store cannot hold, and then nothing is written. An empty list
        writes nothing.
        """

    @abstractmethod
    def transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 20) -> T:
        """Run ``fn`` atomically; on contention rerun it, at most ``max_attempts`` times.

        ``fn`` must do all its reads before its first write and have no side effects
        outside the transaction, since it may run more than once.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default holds none."""


@dataclass(frozen=True)
class ArtifactInfo:
    key: str
    uri: str
    sha256: str
    size: int


class ArtifactStore(ABC):
    """Immutable blobs addressed by key (``a/b/c``; no ``..``, no leading slash)."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> ArtifactInfo:
        """Store bytes; ConflictError if the key exists and ``overwrite`` is false."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The stored bytes; NotFoundError if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` up to (not including) ``end``, fewer past the object's end, so a
        worker reads its shard of a large input without the rest; NotFoundError if absent."""

    @abstractmethod
    def list(self, prefix: str) -> list[ArtifactInfo]:
        """Every artifact whose key starts with ``prefix`` (a text prefix, not only a
        folder), sorted by key; ``sha256`` is empty: listing reads no content."""

    def sha256(self, key: str) -> str:
        """The SHA-256 of what is stored under ``key``; NotFoundError if absent. A store that
        records the hash beside the object answers without reading it; this default reads
        the object and hashes it."""
        return hashlib.sha256(self.get(key)).hexdigest()

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where the artifact lives, for people and records (file:// or gs://)."""


_KEY = re.compile(r"^[A-Za-z0-9_.@+=-]+(/[A-Za-z0-9_.@+=-]+)*$")


def check_artifact_key(key: str) -> str:
    if not _KEY.match(key) or any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"invalid artifact key {key!r}")
    return key


def check_artifact_prefix(prefix: str) -> str:
    """A listing prefix: empty, a key, or a key followed by ``/``."""
    if prefix:
        check_artifact_key(prefix.removesuffix("/"))
    return prefix


class SecretSource(ABC):
    @abstractmethod
    def get(self, name: str) -> str:
        """The secret's value; NotFoundError if unknown, UnavailableError if unreachable."""


MIN_KEY_BYTES = 32


def key_secret(secrets: SecretSource, name: str, *, purpose: str) -> bytes:
    """A key held as a secret, at least 32 bytes. A missing or short key is a
    configuration fault of the service (503), not the caller's (401)."""
    from common.core.errors import NotFoundError, UnavailableError

    try:
        key = secrets.get(name).encode()
    except NotFoundError as exc:
        raise UnavailableError(f"{purpose} secret is not configured: {exc.message}") from None
    if len(key) < MIN_KEY_BYTES:
        raise UnavailableError(f"{purpose} secret {name!r} is shorter than {MIN_KEY_BYTES} bytes")
    return key


class KeyWrapper(ABC):
    """Wraps and unwraps data keys under a key the platform never sees in the cloud (KMS).

    ``context`` is bound to the wrapped key (AES-GCM associated data locally, KMS
    additional authenticated data in the cloud): unwrapping with another context fails.
    """

    key_id: str
    """Names the wrapping key in sealed records (a KMS key name or a local fingerprint)."""

    @abstractmethod
    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        """The wrapped key; UnavailableError if the key service cannot be reached."""

    @abstractmethod
    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """The data key; IntegrityError if ``wrapped`` or ``context`` was altered,
        UnavailableError if the key service cannot be reached."""
