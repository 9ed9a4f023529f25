"""What only the embedded store promises: one file shared by threads and processes."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from common.backends.base import EXPIRE_AT, Filter, Transaction
from common.backends.sqlite_store import SQLiteDocumentStore
from common.core.errors import UnavailableError


def _increment(txn: Transaction) -> None:
    doc = txn.get("c", "n")
    assert doc is not None
    txn.update("c", "n", {"n": doc.data["n"] + 1})


def _increment_many(path: str, times: int) -> None:
    store = SQLiteDocumentStore(Path(path), timeout_s=10)
    for _ in range(times):
        store.transaction(_increment)
    store.close()


def test_parent_folder_is_created_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "db.sqlite3"
    store = SQLiteDocumentStore(path, timeout_s=5)
    store.set("c", "x", {"v": 1})
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_increments_across_processes_are_never_lost(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    store = SQLiteDocumentStore(path, timeout_s=10)
    store.create("c", "n", {"n": 0})
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_increment_many, args=(str(path), 50)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    counter = store.get("c", "n")
    assert counter is not None
    assert counter.data == {"n": 100}


def test_two_instances_on_one_file_see_each_other(tmp_path: Path) -> None:
    first = SQLiteDocumentStore(tmp_path / "db.sqlite3", timeout_s=5)
    second = SQLiteDocumentStore(tmp_path / "db.sqlite3", timeout_s=5)
    created = first.create("c", "x", {"v": 1})
    assert second.get("c", "x") == created


def test_revisions_are_unique_across_the_store(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "db.sqlite3", timeout_s=5)
    revisions = {store.set("c", f"d{i}", {"i": i}).revision for i in range(5)}
    revisions.add(store.update("c", "d0", {"i": 9}).revision)
    assert len(revisions) == 6

    def batch(txn: Transaction) -> None:  # the sets of one transaction go in one statement
        for i in range(3):
            txn.set("c", f"t{i}", {"i": i})

    store.transaction(batch)
    revisions |= {doc.revision for doc in store.query("c") if doc.id.startswith("t")}
    assert len(revisions) == 9

    def many(txn: Transaction) -> None:  # a large batch, in order
        for i in range(450):
            txn.set("m", f"m{i:03d}", {"i": i})

    store.transaction(many)
    stored = store.query("m")
    assert [doc.data["i"] for doc in stored] == list(range(450))
    assert len({doc.revision for doc in stored} | revisions) == 459


def test_set_many_takes_new_revisions_in_order(
    tmp_path: Path,
) -> None:
    store = SQLiteDocumentStore(tmp_path / "db.sqlite3", timeout_s=5)
    before = int(store.set("c", "first", {"i": 0}).revision)
    store.set_many([("c", f"b{i}", {"i": i}) for i in range(5)] + [("c", "first", {"i": 1})])
    batch = [int(store.get("c", f"b{i}").revision) for i in range(5)]  # type: ignore[union-attr]
    replaced = int(store.get("c", "first").revision)  # type: ignore[union-attr]
    assert before < batch[0] < batch[1] < batch[2] < batch[3] < batch[4] < replaced
    after = int(store.set("c", "later", {"i": 2}).revision)
    assert after > replaced
    store.close()


def test_expire_at_is_stored_as_the_string_written(tmp_path: Path) -> None:
    """The embedded store deletes nothing on its own: expire_at is plain JSON text."""
    path = tmp_path / "db.sqlite3"
    store = SQLiteDocumentStore(path, timeout_s=5)
    store.set("c", "x", {EXPIRE_AT: "2031-05-06T07:08:09.101112Z"})
    store.close()
    with sqlite3.connect(path) as conn:
        (text,) = conn.execute("SELECT data FROM documents WHERE id = 'x'").fetchone()
    assert json.loads(text) == {EXPIRE_AT: "2031-05-06T07:08:09.101112Z"}


def test_filter_values_are_parameters_not_sql(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "db.sqlite3", timeout_s=5)
    hostile = "x' OR '1'='1"
    store.create("c", "a", {"name": "safe"})
    store.create("c", "b", {"name": hostile})
    assert [d.id for d in store.query("c", [Filter("name", "==", hostile)])] == ["b"]
    assert [d.id for d in store.query("c", [Filter("name", "in", [hostile, "nope"])])] == ["b"]


def test_path_under_a_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    store = SQLiteDocumentStore(blocker / "db.sqlite3", timeout_s=1)
    with pytest.raises(UnavailableError, match="unavailable") as info:
        store.get("c", "x")
    assert info.value.status == 503
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    with pytest.raises(UnavailableError):
        store.transaction(lambda txn: None)


def test_folder_as_database_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path, timeout_s=1)
    with pytest.raises(UnavailableError, match=str(tmp_path)):
        store.set("c", "x", {"v": 1})


def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UnavailableError, match="not a database"):
        SQLiteDocumentStore(path, timeout_s=1).get("c", "x")


def test_a_held_write_lock_times_out_as_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    SQLiteDocumentStore(path, timeout_s=1).set("c", "x", {"v": 1})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        store = SQLiteDocumentStore(path, timeout_s=0.05)
        assert store.get("c", "x") is not None  # WAL: readers are not blocked
        with pytest.raises(UnavailableError, match="locked"):
            store.set("c", "x", {"v": 2})
        with pytest.raises(UnavailableError, match="locked"):
            store.transaction(lambda txn: None, max_attempts=2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "db.sqlite3", timeout_s=1)
    store.set("c", "x", {"v": 1})
    store.close()
    with pytest.raises(UnavailableError, match="closed"):
        store.get("c", "x")


def test_nested_transaction_is_refused(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "db.sqlite3", timeout_s=1)

    def nested(txn: Transaction) -> None:
        store.set("c", "inner", {"v": 1})

    with pytest.raises(RuntimeError, match="already inside"):
        store.transaction(nested)
    assert store.get("c", "inner") is None


def test_a_write_inside_a_transaction_of_the_same_thread_is_refused_not_deadlocked(
    tmp_path: Path,
) -> None:
    store = SQLiteDocumentStore(tmp_path / "s.sqlite3", timeout_s=2.0)

    def nested(txn: Transaction) -> None:
        txn.get("c", "a")
        store.set("c", "b", {"v": 1})

    try:
        with pytest.raises(RuntimeError, match="already inside a transaction"):
            store.transaction(nested)
        store.set("c", "b", {"v": 2})  # the write lock was released
        found = store.get("c", "b")
        assert found is not None
        assert found.data == {"v": 2}
    finally:
        store.close()


def test_threads_writing_at_once_share_one_connection_and_lose_nothing(tmp_path: Path) -> None:
    import threading

    store = SQLiteDocumentStore(tmp_path / "s.sqlite3", timeout_s=10.0)
    store.create("c", "n", {"n": 0})
    try:
        threads = [
            threading.Thread(target=lambda: [store.transaction(_increment) for _ in range(50)])
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counter = store.get("c", "n")
        assert counter is not None
        assert counter.data["n"] == 300
    finally:
        store.close()
