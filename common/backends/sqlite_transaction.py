"""A transaction of the embedded document store, and the text a document is stored as.

Reads must come before writes, as in Firestore. ``set`` writes, which nothing reads back,
are kept until the next other write or the end of the transaction and then executed
together: one revision-counter update and one statement for all of them, which is what
an audit batch (its entries, kept predictions and the chain head) mostly is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson

from common.backends import _support
from common.backends.base import Document, Transaction, check_name

if TYPE_CHECKING:
    from common.backends.sqlite_store import SQLiteDocumentStore


def document_text(data: dict[str, Any]) -> str:
    """The JSON text a document is stored as; ValueError unless every store can hold it."""
    _support.check_document(data)
    return orjson.dumps(data, default=_float_subclass).decode()


def _float_subclass(value: Any) -> float:
    """orjson writes ``float`` itself, not its subclasses (numpy's float64 among them),
    which ``check_document`` accepts; anything else was refused before this is reached."""
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


class SQLiteTransaction(Transaction):
    """Runs inside ``BEGIN IMMEDIATE``; a failed write dooms the commit, as in Firestore."""

    def __init__(self, store: SQLiteDocumentStore, conn: sqlite3.Connection) -> None:
        self._store = store
        self._conn: sqlite3.Connection | None = conn
        self._wrote = False
        self._sets: list[tuple[str, str, str]] = []
        """``set`` writes not yet executed: they go in one statement, in order, before any
        other write and when ``fn`` returns (reads cannot follow writes, so none sees them
        missing)."""
        self.failure: Exception | None = None

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the transaction has finished")
        return self._conn

    def close(self) -> None:
        self._conn = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._live()
        self._wrote = True
        try:
            self.flush()
            yield conn
        except Exception as exc:
            self.failure = exc
            raise

    def get(self, collection: str, doc_id: str) -> Document | None:
        conn = self._live()
        if self._wrote:
            raise ValueError("transaction reads must come before its writes")
        return self._store._read(conn, collection, doc_id)

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        with self._write() as conn:
            self._store._create(conn, collection, doc_id, data)

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        check_name("collection", collection)
        check_name("document id", doc_id)
        text = document_text(data)
        self._live()
        self._wrote = True
        self._sets.append((collection, doc_id, text))  # nothing is returned or read back

    def flush(self) -> None:
        """Execute the pending ``set`` writes; a failure dooms the commit."""
        if not self._sets:
            return
        sets, self._sets = self._sets, []
        try:
            self._store._write_texts(self._live(), sets)
        except Exception as exc:
            self.failure = exc
            raise

    def update(self, collection: str, doc_id: str, changes: dict[str, Any]) -> None:
        with self._write() as conn:
            self._store._update(conn, collection, doc_id, changes, None)

    def delete(self, collection: str, doc_id: str) -> None:
        with self._write() as conn:
            self._store._delete(conn, collection, doc_id, None)
