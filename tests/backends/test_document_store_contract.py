"""One contract for every DocumentStore: the embedded SQLite store and Firestore.

The query cases pin Firestore's semantics (typed comparisons, ``!=`` skipping null and
missing fields, cross-type ordering), observed on the emulator, so both stores answer
every query identically.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest

from common.backends.base import (
    SET_MANY_MAX,
    Document,
    DocumentStore,
    Filter,
    Order,
    Transaction,
)
from common.core.errors import ConflictError, NotFoundError, PreconditionFailedError

C = "things"

MIXED: dict[str, dict[str, Any]] = {
    "a": {"n": 1, "s": "apple", "b": True, "meta": {"rank": 3}, "tag": "x"},
    "b": {"n": 2.5, "s": "banana", "b": False, "meta": {"rank": 1}, "tag": None},
    "c": {"n": 3, "s": "cherry", "meta": {"rank": 2}},
    "d": {"n": "3", "s": "date", "b": True, "tag": "y"},
    "e": {"n": None, "s": "Elder", "b": 1},
    "f": {"n": True, "s": "fig"},
}


@pytest.fixture
def mixed(document_store: DocumentStore) -> DocumentStore:
    for doc_id, data in MIXED.items():
        document_store.create(C, doc_id, data)
    return document_store


def ids(docs: list[Document]) -> list[str]:
    return [doc.id for doc in docs]


# --- single documents -----------------------------------------------------------------


def test_get_missing_is_none(document_store: DocumentStore) -> None:
    assert document_store.get(C, "nope") is None


def test_create_then_get(document_store: DocumentStore) -> None:
    data = {"name": "m1", "score": 0.5, "tags": ["a", "b"], "meta": {"k": None, "ok": True}}
    created = document_store.create(C, "m1", data)
    assert created.id == "m1"
    assert created.data == data
    assert isinstance(created.revision, str)
    assert created.revision
    assert document_store.get(C, "m1") == created


def test_create_existing_conflicts_and_keeps_original(document_store: DocumentStore) -> None:
    document_store.create(C, "x", {"v": 1})
    with pytest.raises(ConflictError):
        document_store.create(C, "x", {"v": 2})
    got = document_store.get(C, "x")
    assert got is not None
    assert got.data == {"v": 1}


def test_set_creates_then_replaces_whole_document(document_store: DocumentStore) -> None:
    first = document_store.set(C, "x", {"a": 1, "b": 2})
    second = document_store.set(C, "x", {"a": 3})
    assert second.data == {"a": 3}
    assert second.revision != first.revision
    assert document_store.get(C, "x") == second


def test_update_replaces_named_top_level_fields(document_store: DocumentStore) -> None:
    document_store.create(C, "x", {"a": 1, "nested": {"p": 1, "q": 2}, "keep": "me"})
    updated = document_store.update(C, "x", {"a": 2, "nested": {"r": 3}})
    assert updated.data == {"a": 2, "nested": {"r": 3}, "keep": "me"}
    assert document_store.get(C, "x") == updated


def test_update_missing_is_not_found(document_store: DocumentStore) -> None:
    with pytest.raises(NotFoundError):
        document_store.update(C, "ghost", {"a": 1})
    with pytest.raises(NotFoundError):
        document_store.update(C, "ghost", {"a": 1}, if_revision="1")
    assert document_store.get(C, "ghost") is None


def test_update_with_current_revision_succeeds(document_store: DocumentStore) -> None:
    created = document_store.create(C, "x", {"a": 1})
    updated = document_store.update(C, "x", {"a": 2}, if_revision=created.revision)
    assert updated.data == {"a": 2}
    assert updated.revision != created.revision


def test_update_with_stale_revision_fails_and_writes_nothing(
    document_store: DocumentStore,
) -> None:
    created = document_store.create(C, "x", {"a": 1})
    current = document_store.update(C, "x", {"a": 2})
    with pytest.raises(PreconditionFailedError):
        document_store.update(C, "x", {"a": 3}, if_revision=created.revision)
    assert document_store.get(C, "x") == current


def test_revision_of_deleted_document_does_not_match_its_successor(
    document_store: DocumentStore,
) -> None:
    old = document_store.create(C, "x", {"a": 1})
    document_store.delete(C, "x")
    document_store.create(C, "x", {"a": 1})
    with pytest.raises(PreconditionFailedError):
        document_store.update(C, "x", {"a": 2}, if_revision=old.revision)


def test_delete_is_idempotent(document_store: DocumentStore) -> None:
    document_store.create(C, "x", {"a": 1})
    document_store.delete(C, "x")
    assert document_store.get(C, "x") is None
    document_store.delete(C, "x")
    document_store.delete(C, "x", if_revision="0")


def test_delete_with_revision(document_store: DocumentStore) -> None:
    created = document_store.create(C, "x", {"a": 1})
    current = document_store.update(C, "x", {"a": 2})
    with pytest.raises(PreconditionFailedError):
        document_store.delete(C, "x", if_revision=created.revision)
    assert document_store.get(C, "x") == current
    document_store.delete(C, "x", if_revision=current.revision)
    assert document_store.get(C, "x") is None


def test_returned_documents_are_copies(document_store: DocumentStore) -> None:
    data: dict[str, Any] = {"list": [1, 2], "map": {"k": "v"}}
    created = document_store.create(C, "x", data)
    data["list"].append(3)
    created.data["map"]["k"] = "changed"
    fetched = document_store.get(C, "x")
    assert fetched is not None
    assert fetched.data == {"list": [1, 2], "map": {"k": "v"}}
    fetched.data["list"].clear()
    again = document_store.get(C, "x")
    assert again is not None
    assert again.data["list"] == [1, 2]
    queried = document_store.query(C)[0]
    queried.data["map"].clear()
    assert document_store.query(C)[0].data["map"] == {"k": "v"}


@pytest.mark.parametrize(
    "data",
    [
        {"x": float("nan")},
        {"x": [[1, 2]]},
        {"x": 2**63},
        {"x": {1: "a"}},
        {"x": object()},
        {"x": b"bytes"},
    ],
    ids=["nan", "nested-array", "int-overflow", "int-key", "object", "bytes"],
)
def test_values_no_store_can_hold_are_refused(
    document_store: DocumentStore, data: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="x"):
        document_store.create(C, "x", data)
    assert document_store.get(C, "x") is None


@pytest.mark.parametrize("bad", ["a/b", "", "..", "__x__", "a b"])
def test_invalid_names_are_refused(document_store: DocumentStore, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        document_store.get(C, bad)
    with pytest.raises(ValueError, match="invalid"):
        document_store.create(bad, "x", {})


def test_update_keys_must_be_top_level_names(document_store: DocumentStore) -> None:
    document_store.create(C, "x", {"a": {"b": 1}})
    with pytest.raises(ValueError, match="top-level"):
        document_store.update(C, "x", {"a.b": 2})
    with pytest.raises(ValueError, match="at least one"):
        document_store.update(C, "x", {})


def test_concurrent_updates_of_different_fields_all_land(document_store: DocumentStore) -> None:
    """Plain updates race between their read and their write; none may fail or be lost,
    and each returns the document exactly as its own write left it."""
    document_store.create(C, "x", {"base": True})
    writers, rounds = 4, 8
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer(field: str) -> None:
        try:
            start.wait()
            for value in range(rounds):
                doc = document_store.update(C, "x", {field: value})
                assert doc.data[field] == value
                assert doc.data["base"] is True
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"f{i}",)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    final = document_store.get(C, "x")
    assert final is not None
    assert final.data == {"base": True, **{f"f{i}": rounds - 1 for i in range(writers)}}


# --- queries --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter("n", "==", 3), ["c"]),
        (Filter("n", "==", 1), ["a"]),
        (Filter("n", "==", 1.0), ["a"]),
        (Filter("n", "!=", 3), ["a", "b", "d", "f"]),
        (Filter("n", "<", 3), ["a", "b"]),
        (Filter("n", "<=", 3), ["a", "b", "c"]),
        (Filter("n", ">", 1), ["b", "c"]),
        (Filter("n", ">=", 2.5), ["b", "c"]),
        (Filter("n", "in", [1, "3"]), ["a", "d"]),
        (Filter("n", "==", None), ["e"]),
        (Filter("n", "!=", None), ["a", "b", "c", "d", "f"]),
        (Filter("b", "==", True), ["a", "d"]),
        (Filter("b", "==", 1), ["e"]),
        (Filter("b", ">", False), ["a", "d"]),
        (Filter("s", ">", "b"), ["b", "c", "d", "f"]),
        (Filter("s", "<", "a"), ["e"]),
        (Filter("meta.rank", ">=", 2), ["a", "c"]),
        (Filter("tag", "!=", "x"), ["d"]),
        (Filter("tag", "in", ["x", "y", "z"]), ["a", "d"]),
    ],
    ids=lambda v: repr(v) if isinstance(v, Filter) else None,
)
def test_query_operators(mixed: DocumentStore, flt: Filter, expected: list[str]) -> None:
    assert sorted(ids(mixed.query(C, [flt]))) == expected


def test_query_without_filters_returns_the_collection_only(mixed: DocumentStore) -> None:
    mixed.create("other", "z", {"n": 1})
    assert sorted(ids(mixed.query(C))) == sorted(MIXED)
    assert ids(mixed.query("empty")) == []


def test_query_combines_filters(mixed: DocumentStore) -> None:
    found = mixed.query(C, [Filter("b", "==", True), Filter("s", ">=", "b")])
    assert ids(found) == ["d"]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (Order("n"), ["e", "f", "a", "b", "c", "d"]),
        (Order("n", descending=True), ["d", "c", "b", "a", "f", "e"]),
        (Order("meta.rank", descending=True), ["a", "c", "b"]),
        (Order("tag"), ["b", "a", "d"]),
        (Order("b"), ["b", "a", "d", "e"]),
        (Order("b", descending=True), ["e", "d", "a", "b"]),
        (Order("s"), ["e", "a", "b", "c", "d", "f"]),
    ],
    ids=lambda v: repr(v) if isinstance(v, Order) else None,
)
def test_query_order(mixed: DocumentStore, order: Order, expected: list[str]) -> None:
    """Cross-type order, missing fields skipped, ties broken by id in the same direction."""
    assert ids(mixed.query(C, order_by=[order])) == expected


def test_query_order_on_two_fields(mixed: DocumentStore) -> None:
    found = mixed.query(C, [Filter("b", "==", True)], order_by=[Order("b"), Order("s", True)])
    assert ids(found) == ["d", "a"]


def test_query_filter_order_and_limit(mixed: DocumentStore) -> None:
    found = mixed.query(C, [Filter("n", ">", 1)], order_by=[Order("n", descending=True)])
    assert ids(found) == ["c", "b"]
    assert ids(mixed.query(C, order_by=[Order("s")], limit=2)) == ["e", "a"]
    assert ids(mixed.query(C, [Filter("n", "<=", 3)], [Order("n")], limit=1)) == ["a"]
    assert mixed.query(C, limit=0) == []


def test_query_returns_full_documents(mixed: DocumentStore) -> None:
    (found,) = mixed.query(C, [Filter("s", "==", "apple")])
    assert found == mixed.get(C, "a")


@pytest.mark.parametrize(
    "flt",
    [
        Filter("n", "in", []),
        Filter("n", "in", list(range(31))),
        Filter("n", "in", 3),
        Filter("n", "in", [None]),
        Filter("n", "<", None),
        Filter("n", "==", [1]),
        Filter("n", "==", {"a": 1}),
    ],
    ids=["in-empty", "in-31", "in-scalar", "in-none", "lt-none", "eq-list", "eq-map"],
)
def test_query_refuses_ambiguous_filters(document_store: DocumentStore, flt: Filter) -> None:
    with pytest.raises(ValueError, match=r"'in'|None|filter values"):
        document_store.query(C, [flt])


def test_query_refuses_bad_limit(document_store: DocumentStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        document_store.query(C, limit=-1)


# --- transactions ---------------------------------------------------------------------


def test_transaction_commits_reads_and_writes(document_store: DocumentStore) -> None:
    document_store.create(C, "from", {"balance": 10})
    document_store.create(C, "to", {"balance": 0})
    document_store.create(C, "gone", {"x": 1})

    def transfer(txn: Transaction) -> int:
        source, target = txn.get(C, "from"), txn.get(C, "to")
        assert source is not None
        assert target is not None
        assert txn.get(C, "absent") is None
        txn.update(C, "from", {"balance": source.data["balance"] - 4})
        txn.update(C, "to", {"balance": target.data["balance"] + 4})
        txn.create(C, "log", {"amount": 4})
        txn.set(C, "summary", {"moved": 4})
        txn.delete(C, "gone")
        return 4

    assert document_store.transaction(transfer) == 4
    balances = {d.id: d.data for d in document_store.query(C)}
    assert balances == {
        "from": {"balance": 6},
        "to": {"balance": 4},
        "log": {"amount": 4},
        "summary": {"moved": 4},
    }


class Boom(Exception):
    pass


def test_transaction_exception_writes_nothing(document_store: DocumentStore) -> None:
    original = document_store.create(C, "x", {"v": 1})

    def fail(txn: Transaction) -> None:
        txn.get(C, "x")
        txn.update(C, "x", {"v": 2})
        txn.create(C, "new", {"v": 1})
        raise Boom

    with pytest.raises(Boom):
        document_store.transaction(fail)
    assert document_store.get(C, "x") == original
    assert document_store.get(C, "new") is None


def test_transaction_create_conflict_fails_whole_transaction(
    document_store: DocumentStore,
) -> None:
    document_store.create(C, "taken", {"v": 1})

    def create_both(txn: Transaction) -> None:
        txn.create(C, "fresh", {"v": 1})
        txn.create(C, "taken", {"v": 2})

    with pytest.raises(ConflictError):
        document_store.transaction(create_both)
    assert document_store.get(C, "fresh") is None
    taken = document_store.get(C, "taken")
    assert taken is not None
    assert taken.data == {"v": 1}


def test_transaction_update_missing_fails_whole_transaction(
    document_store: DocumentStore,
) -> None:
    def write(txn: Transaction) -> None:
        txn.set(C, "written", {"v": 1})
        with contextlib.suppress(NotFoundError):  # swallowing it does not save the transaction
            txn.update(C, "ghost", {"v": 1})

    with pytest.raises(NotFoundError):
        document_store.transaction(write)
    assert document_store.get(C, "written") is None


def test_transaction_writes_apply_in_the_order_they_were_made(
    document_store: DocumentStore,
) -> None:
    document_store.create(C, "kept", {"v": 0})
    before = {doc.id: doc.revision for doc in document_store.query(C)}

    def write(txn: Transaction) -> None:
        txn.set(C, "a", {"v": 1})
        txn.set(C, "a", {"v": 2})  # the later set of one document wins
        txn.set(C, "gone", {"v": 1})
        txn.delete(C, "gone")
        txn.set(C, "b", {"v": 1})
        txn.update(C, "b", {"w": 2})  # sees the set before it
        txn.update(C, "kept", {"v": 3})
        txn.set(C, "c", {"x": [1.5, {"y": None}]})

    document_store.transaction(write)
    stored = {doc.id: doc for doc in document_store.query(C)}
    assert {k: d.data for k, d in stored.items()} == {
        "a": {"v": 2},
        "b": {"v": 1, "w": 2},
        "c": {"x": [1.5, {"y": None}]},
        "kept": {"v": 3},
    }
    assert stored["kept"].revision != before["kept"]


def test_a_refused_set_in_a_transaction_writes_nothing(document_store: DocumentStore) -> None:
    def write(txn: Transaction) -> None:
        txn.set(C, "fine", {"v": 1})
        txn.set(C, "bad", {"v": float("nan")})

    with pytest.raises(ValueError, match="v"):
        document_store.transaction(write)
    assert document_store.query(C) == []


def test_set_many_creates_and_replaces_every_document_under_new_revisions(
    document_store: DocumentStore,
) -> None:
    old = document_store.create(C, "old", {"v": 0, "gone": True})
    document_store.set_many(
        [(C, "old", {"v": 1}), (C, "new", {"x": [1.5, {"y": None}]}), ("other", "o", {"n": 2})]
    )
    stored = {doc.id: doc for doc in document_store.query(C)}
    assert {k: d.data for k, d in stored.items()} == {
        "old": {"v": 1},
        "new": {"x": [1.5, {"y": None}]},
    }
    assert stored["old"].revision != old.revision
    other = document_store.get("other", "o")
    assert other is not None
    assert other.data == {"n": 2}


def test_set_many_of_nothing_writes_nothing(document_store: DocumentStore) -> None:
    document_store.set_many([])
    assert document_store.query(C) == []


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([(C, "fine", {"v": 1}), (C, "bad", {"v": float("nan")})], "v"),
        ([(C, "fine", {"v": 1}), (C, "nested", {"v": [[1]]})], "v"),
        ([(C, "twice", {"v": 1}), (C, "fine", {"v": 1}), (C, "twice", {"v": 2})], "more than once"),
        ([(C, "fine", {"v": 1}), (C, "a/b", {"v": 1})], "document id"),
        ([(C, f"d{i}", {"v": i}) for i in range(SET_MANY_MAX + 1)], f"at most {SET_MANY_MAX}"),
    ],
    ids=["nan", "nested-array", "same-document-twice", "bad-id", "too-many"],
)
def test_a_refused_set_many_writes_nothing(
    document_store: DocumentStore, documents: list[tuple[str, str, dict[str, Any]]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        document_store.set_many(documents)
    assert document_store.query(C) == []


def test_set_many_takes_as_many_documents_as_one_commit_holds(
    document_store: DocumentStore,
) -> None:
    document_store.set_many([(C, f"d{i:03d}", {"v": i}) for i in range(SET_MANY_MAX)])
    assert [doc.data["v"] for doc in document_store.query(C, order_by=[Order("v")])] == list(
        range(SET_MANY_MAX)
    )


def test_transaction_reads_must_precede_writes(document_store: DocumentStore) -> None:
    def read_after_write(txn: Transaction) -> None:
        txn.set(C, "a", {"v": 1})
        txn.get(C, "a")

    with pytest.raises(ValueError, match="before"):
        document_store.transaction(read_after_write)
    assert document_store.get(C, "a") is None


def test_transaction_handle_is_dead_after_the_transaction(
    document_store: DocumentStore,
) -> None:
    kept: list[Transaction] = []
    document_store.transaction(kept.append)
    with pytest.raises(RuntimeError, match="finished"):
        kept[0].set(C, "late", {"v": 1})
    assert document_store.get(C, "late") is None


def test_transaction_needs_an_attempt(document_store: DocumentStore) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        document_store.transaction(lambda txn: None, max_attempts=0)


def test_contended_increments_are_never_lost(document_store: DocumentStore) -> None:
    """Two threads, 50 read-modify-write transactions each, on one counter."""
    document_store.create(C, "counter", {"n": 0})
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def increment(txn: Transaction) -> None:
        doc = txn.get(C, "counter")
        assert doc is not None
        txn.update(C, "counter", {"n": doc.data["n"] + 1})

    def worker() -> None:
        try:
            start.wait()
            for _ in range(50):
                document_store.transaction(increment)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    counter = document_store.get(C, "counter")
    assert counter is not None
    assert counter.data == {"n": 100}
