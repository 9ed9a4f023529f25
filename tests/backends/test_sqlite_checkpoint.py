"""The embedded store's write-ahead log is copied into the database by a thread of the
process, not by the commits that requests wait for, and stays bounded."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from common.backends import sqlite_checkpoint, sqlite_store
from common.backends.sqlite_store import SQLiteDocumentStore


def in_database_file(path: Path) -> int:
    """Documents the database file itself holds, the write-ahead log ignored."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])
    except sqlite3.OperationalError:  # the table itself is still only in the log
        return 0
    except sqlite3.DatabaseError:  # read while the thread was copying pages in: not yet
        return 0
    finally:
        conn.close()


def write_some(store: SQLiteDocumentStore, count: int) -> None:
    for n in range(count):
        store.set_many([("c", f"d{n}", {"n": n, "text": "x" * 500})])


def test_commits_leave_the_copy_to_the_checkpoint_thread(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SQLiteDocumentStore(path, timeout_s=5)
    write_some(store, 20)  # far below the 1,000 pages at which a commit would copy
    deadline = time.monotonic() + 10
    while in_database_file(path) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert in_database_file(path) == 20
    assert store._writer().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    store.close()


def test_in_commit_mode_the_log_waits_for_a_commit_to_fill_it(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SQLiteDocumentStore(path, timeout_s=5, checkpoints="commit")
    write_some(store, 20)
    time.sleep(3 * sqlite_checkpoint.EVERY_S)
    assert in_database_file(path) == 0  # all of it still in the log: nobody copied it
    store.close()


def test_the_log_stays_bounded_while_writers_never_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads commit back to back, so no commit ever begins after a complete copy
    and SQLite never restarts the log on its own; the restart past ``RESTART_FRAMES``
    keeps it from growing with what was written (about 120 MB of log here)."""
    monkeypatch.setattr(sqlite_checkpoint, "RESTART_FRAMES", 256)
    monkeypatch.setattr(sqlite_checkpoint.checkpointer, "_every_s", 0.01)
    path = tmp_path / "store.sqlite3"
    store = SQLiteDocumentStore(path, timeout_s=5)
    blob = "y" * 3000

    def write(thread: int) -> None:
        for n in range(1500):
            store.set_many([("c", f"{thread}-{n}-{k}", {"blob": blob}) for k in range(3)])

    threads = [threading.Thread(target=write, args=(t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wal = path.with_name(path.name + "-wal").stat().st_size
    assert wal < 40 * 2**20, wal  # a third of the log that went through it
    assert len(store.query("c")) == 9000
    store.close()


def test_the_thread_sleeps_while_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle process's checkpoint thread runs no round until a store commits (its own
    checkpointer here, so that no other test's store can wake it)."""
    own = sqlite_checkpoint.Checkpointer(every_s=0.01)
    monkeypatch.setattr(sqlite_store, "checkpointer", own)
    path = tmp_path / "store.sqlite3"
    store = SQLiteDocumentStore(path, timeout_s=5)
    write_some(store, 1)
    deadline = time.monotonic() + 10
    while in_database_file(path) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    rounds = own.rounds
    assert rounds >= 1
    time.sleep(0.3)  # thirty rounds' worth of waiting
    assert own.rounds == rounds
    write_some(store, 2)
    while in_database_file(path) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert in_database_file(path) == 2
    assert own.rounds > rounds
    store.close()


def test_a_closed_store_is_let_go(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "store.sqlite3", timeout_s=5)
    write_some(store, 1)
    store.close()
    checkpointer = sqlite_checkpoint.Checkpointer()
    checkpointer._stores.add(store)
    checkpointer.checkpoint(store)
    assert store not in checkpointer._stores
