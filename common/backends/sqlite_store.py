"""The embedded document store: one SQLite file, shared safely by threads and processes.

WAL mode lets readers run beside the one writer; every write takes the write lock up
front (``BEGIN IMMEDIATE``) so a read-modify-write never loses an update. A busy lock is
waited for here, in steps of 0.1 to 2 ms until the store's timeout, not by SQLite's own
busy handler, whose sleeps grow to 100 ms: a request whose audit entry waits for another
process's commit should wait about as long as that commit takes. A process writes
through one connection (its threads take turns), so the pages a commit touches stay in
that connection's cache instead of being read again by each thread's own. A store-wide
revision counter makes revisions unique even across delete and re-create. Queries follow
Firestore's semantics (typed comparisons, ``!=`` skips null and missing fields, ordering
skips documents without the field) so the two stores answer alike.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from common.backends import _support, local_files, sqlite_rows
from common.backends.base import Document, DocumentStore, Filter, Order, Transaction
from common.backends.sqlite_checkpoint import checkpointer
from common.backends.sqlite_query import build_select
from common.backends.sqlite_rows import document_text
from common.backends.sqlite_transaction import SQLiteTransaction
from common.core.errors import (
    UnavailableError,
)

T = TypeVar("T")

_LOCK_ATTEMPTS = 4
_BUSY_STEP_S = 0.0002
_BUSY_STEP_MAX_S = 0.004
_BUSY_CODES = frozenset((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(exc)


class _Connection(sqlite3.Connection):
    """A connection that remembers its process and can be weakly referenced, so one
    left behind by a finished thread is closed by garbage collection, not kept open."""

    pid: int


class SQLiteDocumentStore(DocumentStore):
    """Documents as JSON text in one table; nothing is opened until the first call."""

    def __init__(
        self,
        path: Path,
        *,
        timeout_s: float,
        checkpoints: Literal["background", "commit"] = "background",
    ) -> None:
        self._path = Path(path)
        self._timeout_s = timeout_s
        self._background_checkpoints = checkpoints == "background"
        self._uncopied = False
        self._checkpointing = threading.Lock()
        """Held by a checkpoint and by ``close``: a connection is never closed under one."""
        self._no_restart_due = threading.Event()
        """Cleared while a restart of the log waits for the write lock: writers let it go
        first, or a writer that never pauses would keep it out."""
        self._no_restart_due.set()
        self._next_restart_at = 0.0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._closed = False
        self._write_conn: _Connection | None = None
        self._write_lock = threading.Lock()
        self._write_owner = 0
        self._locks_pid = os.getpid()

    # --- connections -------------------------------------------------------------------

    def _connect(self) -> _Connection:
        """This thread's connection, for reads; a forked child opens its own."""
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid() or self._closed:
            conn = self._local.conn = self._open()
        return conn

    def _writer(self) -> _Connection:
        """This process's one connection for writes (the caller holds ``_write_lock``).

        SQLite drops a connection's page cache whenever another connection has written;
        with every thread writing through its own connection, each commit would start by
        reading its pages again. One writer per process keeps them warm."""
        conn = self._write_conn
        if conn is None or conn.pid != os.getpid() or self._closed:
            conn = self._write_conn = self._open()
            if self._background_checkpoints:  # its commits never copy the log
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                checkpointer.register(self)
        return conn

    def _open(self) -> _Connection:
        if self._closed:
            raise UnavailableError("the document store has been closed")
        try:
            local_files.prepare_database(self._path)
            # No busy timeout: a busy lock is reported at once and ``_retry_locked``
            # waits for it in fine steps.
            conn = sqlite3.connect(
                self._path,
                timeout=0,
                isolation_level=None,
                check_same_thread=False,
                factory=_Connection,
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable(exc) from None
        conn.pid = os.getpid()
        try:
            self._retry_locked(lambda: self._prepare(conn), _LOCK_ATTEMPTS)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._connections.add(conn)
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """WAL mode and the schema; the write lock is taken only if the schema is missing,
        so opening a connection never waits for a writer."""
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise UnavailableError(f"SQLite at {self._path} refused WAL mode ({mode})")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a crash of the
        # process loses nothing, a power cut can lose the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
        if sqlite_rows.schema_is_ready(conn):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            sqlite_rows.create_schema(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _unavailable(self, exc: BaseException) -> UnavailableError:
        return UnavailableError(f"SQLite document store at {self._path} is unavailable: {exc}")

    def _retry_locked(self, call: Callable[[], T], attempts: int) -> T:
        """Run ``call``; while the lock is busy, run it again after a short jittered pause,
        until the store's timeout. ``attempts`` bounds retries of a busy lock that SQLite
        reports although nobody holds it for long (WAL recovery, a stale read snapshot)
        only through the same timeout: a held lock is simply waited for."""
        deadline = time.monotonic() + self._timeout_s
        polls = 0
        while True:
            try:
                return call()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._unavailable(exc) from None
                if time.monotonic() >= deadline:
                    raise UnavailableError(
                        f"SQLite document store at {self._path} stayed locked by another "
                        f"writer for {self._timeout_s:g} s ({polls + 1} tries)",
                        retry_after_s=1,
                    ) from None
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from None
            time.sleep(_support.backoff_s(polls, base_s=_BUSY_STEP_S, cap_s=_BUSY_STEP_MAX_S))
            polls += 1

    def _read_only(self, call: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connect()
        return self._retry_locked(lambda: call(conn), _LOCK_ATTEMPTS)

    def _atomic(self, call: Callable[[sqlite3.Connection], T], attempts: int = _LOCK_ATTEMPTS) -> T:
        """Run ``call`` inside BEGIN IMMEDIATE, so read-modify-write cannot interleave.
        A process's writers take turns on its one write connection."""
        with self._writing() as conn:

            def attempt() -> T:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = call(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

            return self._retry_locked(attempt, attempts)

    @contextmanager
    def _writing(self) -> Iterator[_Connection]:
        """The write connection, this process's writers taking turns; marks the log as
        having something to copy once the write is done."""
        if self._write_owner == threading.get_ident():
            raise RuntimeError("this thread is already inside a transaction of this store")
        self._own_locks()
        if not self._no_restart_due.is_set():
            self._no_restart_due.wait(1.0)
        with self._write_lock:
            self._write_owner = threading.get_ident()
            try:
                yield self._writer()
                self.mark_uncopied()
            finally:
                self._write_owner = 0

    # --- checkpoints (common.backends.sqlite_checkpoint) --------------------------------

    def checkpoint(self, *, restart_past: int | None = None) -> bool:
        """Copy the write-ahead log into the database, waiting for nobody (PASSIVE); True
        when all of it was copied. SQLite starts the log afresh only at a commit that
        began after the log was wholly copied, which writers that never pause never do: a
        log longer than ``restart_past`` pages is restarted here (RESTART). This process's
        writers let it go first and wait for it; another process's writers are held out
        for the copy and up to 50 ms more while a reader finishes, and a restart a reader
        kept from finishing is not tried again for a second."""
        with self._checkpoint_lock():
            conn = self._connect()  # UnavailableError once closed
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if restart_past is None or frames <= restart_past:
                return not busy and copied >= frames
            if time.monotonic() < self._next_restart_at:
                return False
            self._no_restart_due.clear()  # writers arriving now wait for it
            try:
                with self._write_lock:
                    conn.execute("PRAGMA busy_timeout = 50")  # this thread's own connection
                    try:
                        restart = conn.execute("PRAGMA wal_checkpoint(RESTART)")
                        busy, frames, copied = restart.fetchone()
                    finally:
                        conn.execute("PRAGMA busy_timeout = 0")
            finally:
                self._no_restart_due.set()
            if busy:
                self._next_restart_at = time.monotonic() + 1.0
        return not busy and copied >= frames

    @property
    def closed(self) -> bool:
        return self._closed

    def _checkpoint_lock(self) -> threading.Lock:
        self._own_locks()
        return self._checkpointing

    def _own_locks(self) -> None:
        """Locks a parent held when it forked are not this process's: fresh ones."""
        if self._locks_pid != os.getpid():
            self._write_lock, self._write_owner = threading.Lock(), 0
            self._checkpointing = threading.Lock()
            self._locks_pid = os.getpid()

    def take_uncopied(self) -> bool:
        """Whether a commit came since the last call."""
        uncopied, self._uncopied = self._uncopied, False
        return uncopied

    def mark_uncopied(self) -> None:
        self._uncopied = True
        if self._background_checkpoints:
            checkpointer.wake()

    # --- DocumentStore -----------------------------------------------------------------

    def get(self, collection: str, doc_id: str) -> Document | None:
        return self._read_only(lambda conn: sqlite_rows.read(conn, collection, doc_id))

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> Document:
        return self._atomic(lambda conn: sqlite_rows.create(conn, collection, doc_id, data))

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> Document:
        return self._atomic(lambda conn: sqlite_rows.set_row(conn, collection, doc_id, data))

    def set_many(self, documents: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        _support.check_set_many(documents)
        rows = [(collection, doc_id, document_text(data)) for collection, doc_id, data in documents]
        if rows:
            self._atomic(lambda conn: sqlite_rows.write_texts(conn, rows))

    def update(
        self,
        collection: str,
        doc_id: str,
        changes: dict[str, Any],
        *,
        if_revision: str | None = None,
    ) -> Document:
        return self._atomic(
            lambda conn: sqlite_rows.update(conn, collection, doc_id, changes, if_revision)
        )

    def delete(self, collection: str, doc_id: str, *, if_revision: str | None = None) -> None:
        self._atomic(lambda conn: sqlite_rows.delete(conn, collection, doc_id, if_revision))

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
    ) -> list[Document]:
        sql, params = build_select(collection, filters, order_by, limit)
        rows = self._read_only(lambda conn: conn.execute(sql, params).fetchall())
        return [Document(row[0], orjson.loads(row[1]), str(row[2])) for row in rows]

    def transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 20) -> T:
        """The write lock is taken before ``fn`` runs, so ``fn`` never sees a rival write.

        Contention therefore shows up only as a busy lock, which is waited for (busy
        timeout) and retried up to ``max_attempts`` times.
        """
        _support.check_attempts(max_attempts)
        return self._atomic(lambda conn: self._run(conn, fn), max_attempts)

    def _run(self, conn: sqlite3.Connection, fn: Callable[[Transaction], T]) -> T:
        txn = SQLiteTransaction(self, conn)
        try:
            result = fn(txn)
            if txn.failure is not None:
                raise txn.failure
            txn.flush()
            return result
        finally:
            txn.close()

    def close(self) -> None:
        """Refuse further calls and close every connection this store opened."""
        with self._checkpoint_lock(), self._lock:
            self._closed = True
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            if conn.pid == os.getpid():  # never touch a parent's connection after fork
                conn.close()
