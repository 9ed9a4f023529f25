"""The rows of the embedded store: its tables (every document is a row of ``documents``;
``revision_counter`` hands out revisions that stay unique across delete and re-create),
the text a document is stored as, and the row operations a transaction is made of, each
on a connection that already holds the write lock (``BEGIN IMMEDIATE``)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from common.backends import _support
from common.backends.base import Document, check_name
from common.core.errors import ConflictError, NotFoundError, PreconditionFailedError

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS documents ("
    " collection TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,"
    " revision INTEGER NOT NULL, PRIMARY KEY (collection, id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS revision_counter ("
    " one INTEGER PRIMARY KEY CHECK (one = 1), value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO revision_counter (one, value) VALUES (1, 0)",
)
_TABLES = ("documents", "revision_counter")


def schema_is_ready(conn: sqlite3.Connection) -> bool:
    """Whether every table exists, so that opening a connection takes no write lock."""
    found = conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN (?, ?)", _TABLES)
    return bool(found.fetchone()[0] == len(_TABLES))


def create_schema(conn: sqlite3.Connection) -> None:
    """The schema, inside the caller's write transaction."""
    for statement in SCHEMA:
        conn.execute(statement)


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


def read(conn: sqlite3.Connection, collection: str, doc_id: str) -> Document | None:
    check_name("collection", collection)
    check_name("document id", doc_id)
    row = conn.execute(
        "SELECT data, revision FROM documents WHERE collection = ? AND id = ?",
        (collection, doc_id),
    ).fetchone()
    return None if row is None else Document(doc_id, orjson.loads(row[0]), str(row[1]))


def write_row(
    conn: sqlite3.Connection, collection: str, doc_id: str, data: dict[str, Any]
) -> Document:
    """Store ``data`` under a new store-wide revision, so a revision is never reused,
    even after delete and re-create; return exactly what was stored."""
    text = document_text(data)
    revision = write_text(conn, collection, doc_id, text)
    return Document(doc_id, orjson.loads(text), revision)


def write_text(conn: sqlite3.Connection, collection: str, doc_id: str, text: str) -> str:
    return write_texts(conn, [(collection, doc_id, text)])[-1]


def write_texts(conn: sqlite3.Connection, rows: list[tuple[str, str, str]]) -> list[str]:
    """Write each (collection, id, text) in order under consecutive new revisions: one
    counter update and one statement for all of them."""
    (last,) = conn.execute(
        "UPDATE revision_counter SET value = value + ? WHERE one = 1 RETURNING value",
        (len(rows),),
    ).fetchone()
    first = last - len(rows) + 1
    conn.executemany(
        "INSERT INTO documents (collection, id, data, revision) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (collection, id) DO UPDATE"
        " SET data = excluded.data, revision = excluded.revision",
        [(c, d, text, first + i) for i, (c, d, text) in enumerate(rows)],
    )
    return [str(first + i) for i in range(len(rows))]


def create(
    conn: sqlite3.Connection, collection: str, doc_id: str, data: dict[str, Any]
) -> Document:
    document_text(data)  # invalid data is a ValueError even when the id is taken
    if read(conn, collection, doc_id) is not None:
        raise ConflictError(f"{collection}/{doc_id} already exists")
    return write_row(conn, collection, doc_id, data)


def set_row(
    conn: sqlite3.Connection, collection: str, doc_id: str, data: dict[str, Any]
) -> Document:
    check_name("collection", collection)
    check_name("document id", doc_id)
    return write_row(conn, collection, doc_id, data)


def update(
    conn: sqlite3.Connection,
    collection: str,
    doc_id: str,
    changes: dict[str, Any],
    if_revision: str | None,
) -> Document:
    _support.check_changes(changes)
    current = read(conn, collection, doc_id)
    if current is None:
        raise NotFoundError(f"{collection}/{doc_id} does not exist")
    if if_revision is not None and current.revision != if_revision:
        raise PreconditionFailedError(f"{collection}/{doc_id} changed since it was read")
    return write_row(conn, collection, doc_id, {**current.data, **changes})


def delete(conn: sqlite3.Connection, collection: str, doc_id: str, if_revision: str | None) -> None:
    current = read(conn, collection, doc_id)
    if current is None:
        return
    if if_revision is not None and current.revision != if_revision:
        raise PreconditionFailedError(f"{collection}/{doc_id} changed since it was read")
    conn.execute("DELETE FROM documents WHERE collection = ? AND id = ?", (collection, doc_id))
