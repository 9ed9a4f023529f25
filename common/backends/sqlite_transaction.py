"""A transaction of the embedded document store.

Reads must come before writes, as in Firestore. ``set`` writes, which nothing reads back,
are kept until the next other write or the end of the transaction and then executed
together: one revision-counter update and one statement for all of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from common.backends import sqlite_rows
from common.backends.base import Document, Transaction, check_name

if TYPE_CHECKING:
    from common.backends.sqlite_store import SQLiteDocumentStore


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
        return sqlite_rows.read(conn, collection, doc_id)

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        with self._write() as conn:
            sqlite_rows.create(conn, collection, doc_id, data)

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        check_name("collection", collection)
        check_name("document id", doc_id)
        text = sqlite_rows.document_text(data)
        self._live()
        self._wrote = True
        self._sets.append((collection, doc_id, text))  # nothing is returned or read back

    def flush(self) -> None:
        """Execute the pending ``set`` writes; a failure dooms the commit."""
        if not self._sets:
            return
        sets, self._sets = self._sets, []
        try:
            sqlite_rows.write_texts(self._live(), sets)
        except Exception as exc:
            self.failure = exc
            raise

    def update(self, collection: str, doc_id: str, changes: dict[str, Any]) -> None:
        with self._write() as conn:
            sqlite_rows.update(conn, collection, doc_id, changes, None)

    def delete(self, collection: str, doc_id: str) -> None:
        with self._write() as conn:
            sqlite_rows.delete(conn, collection, doc_id, None)
