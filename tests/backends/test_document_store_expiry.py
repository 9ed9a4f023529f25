"""The ``expire_at`` contract on every DocumentStore: callers write and read an RFC 3339
string, whatever the store holds (a Timestamp in Firestore, for its TTL policy), filter and
order on it alike, and a malformed value is refused on every write path and in filters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from common.backends.base import EXPIRE_AT, Document, DocumentStore, Filter, Order, Transaction

C = "expiring"
EARLY = "2024-03-01T00:00:00.000000Z"
MIDDLE = "2024-03-01T12:30:45.123456Z"
LATE = "2031-12-31T23:59:59.999999Z"

BAD = [
    "2024-03-01T00:00:00Z",
    "2024-03-01T00:00:00.123Z",
    "2024-03-01T00:00:00.000000+00:00",
    "2024-03-01 00:00:00.000000Z",
    "2024-02-30T00:00:00.000000Z",
    "2024-03-01T24:00:00.000000Z",
    "2024-03-01T00:00:00.000000Z\n",
    "tomorrow",
    "",
    None,
    1_709_251_200,
    {"seconds": 1},
]
BAD_IDS = [
    "no-fraction",
    "millis",
    "offset",
    "space",
    "feb-30",
    "hour-24",
    "newline",
    "word",
    "empty",
    "none",
    "int",
    "map",
]


def ids(docs: list[Document]) -> list[str]:
    return [doc.id for doc in docs]


def test_round_trip_through_create_set_update_get_and_query(
    document_store: DocumentStore,
) -> None:
    created = document_store.create(C, "a", {"v": 1, EXPIRE_AT: EARLY})
    assert created.data == {"v": 1, EXPIRE_AT: EARLY}
    assert document_store.get(C, "a") == created

    replaced = document_store.set(C, "a", {"v": 2, EXPIRE_AT: MIDDLE})
    assert replaced.data == {"v": 2, EXPIRE_AT: MIDDLE}
    assert document_store.get(C, "a") == replaced

    updated = document_store.update(C, "a", {EXPIRE_AT: LATE}, if_revision=replaced.revision)
    assert updated.data == {"v": 2, EXPIRE_AT: LATE}
    assert document_store.get(C, "a") == updated
    (queried,) = document_store.query(C)
    assert queried == updated

    other = document_store.update(C, "a", {"v": 3})  # an update leaving expire_at alone
    assert other.data == {"v": 3, EXPIRE_AT: LATE}
    assert document_store.get(C, "a") == other


def test_round_trip_through_transactions(document_store: DocumentStore) -> None:
    document_store.create(C, "upd", {"v": 1})

    def write(txn: Transaction) -> None:
        txn.create(C, "new", {"v": 1, EXPIRE_AT: EARLY})
        txn.set(C, "set", {"v": 2, EXPIRE_AT: MIDDLE})
        txn.update(C, "upd", {EXPIRE_AT: LATE})

    document_store.transaction(write)

    def read(txn: Transaction) -> dict[str, Any]:
        found = {doc_id: txn.get(C, doc_id) for doc_id in ("new", "set", "upd")}
        return {k: doc.data if doc else None for k, doc in found.items()}

    assert document_store.transaction(read) == {
        "new": {"v": 1, EXPIRE_AT: EARLY},
        "set": {"v": 2, EXPIRE_AT: MIDDLE},
        "upd": {"v": 1, EXPIRE_AT: LATE},
    }
    assert {d.id: d.data[EXPIRE_AT] for d in document_store.query(C)} == {
        "new": EARLY,
        "set": MIDDLE,
        "upd": LATE,
    }


def test_the_extremes_a_timestamp_holds_round_trip(document_store: DocumentStore) -> None:
    extremes = {"min": "0001-01-01T00:00:00.000000Z", "max": "9999-12-31T23:59:59.999999Z"}
    for doc_id, moment in extremes.items():
        document_store.set(C, doc_id, {EXPIRE_AT: moment})
        found = document_store.get(C, doc_id)
        assert found is not None
        assert found.data == {EXPIRE_AT: moment}


@pytest.fixture
def expiring(document_store: DocumentStore) -> DocumentStore:
    document_store.create(C, "early", {EXPIRE_AT: EARLY, "kind": "w"})
    document_store.create(C, "middle", {EXPIRE_AT: MIDDLE, "kind": "w"})
    document_store.create(C, "late", {EXPIRE_AT: LATE, "kind": "a"})
    document_store.create(C, "never", {"kind": "w"})
    document_store.create(C, "nested", {"meta": {EXPIRE_AT: "not a time, and fine"}})
    return document_store


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter(EXPIRE_AT, "<", "2024-03-01T12:30:45.123457Z"), ["early", "middle"]),
        (Filter(EXPIRE_AT, "<", MIDDLE), ["early"]),
        (Filter(EXPIRE_AT, "<=", MIDDLE), ["early", "middle"]),
        (Filter(EXPIRE_AT, ">", MIDDLE), ["late"]),
        (Filter(EXPIRE_AT, ">=", EARLY), ["early", "late", "middle"]),
        (Filter(EXPIRE_AT, "==", LATE), ["late"]),
        (Filter(EXPIRE_AT, "!=", LATE), ["early", "middle"]),
        (Filter(EXPIRE_AT, "in", [EARLY, LATE]), ["early", "late"]),
        (Filter(EXPIRE_AT, "==", None), []),
        (Filter(EXPIRE_AT, "!=", None), ["early", "late", "middle"]),
        (Filter("meta.expire_at", "==", "not a time, and fine"), ["nested"]),
    ],
    ids=lambda v: repr(v) if isinstance(v, Filter) else None,
)
def test_filters_on_expire_at_answer_alike(
    expiring: DocumentStore, flt: Filter, expected: list[str]
) -> None:
    assert sorted(ids(expiring.query(C, [flt]))) == expected


def test_expired_documents_are_found_with_other_filters(expiring: DocumentStore) -> None:
    found = expiring.query(
        C, [Filter("kind", "==", "w"), Filter(EXPIRE_AT, "<", "2025-01-01T00:00:00.000000Z")]
    )
    assert ids(found) == ["early", "middle"]
    assert all(isinstance(doc.data[EXPIRE_AT], str) for doc in found)


def test_order_and_limit_on_expire_at(expiring: DocumentStore) -> None:
    assert ids(expiring.query(C, order_by=[Order(EXPIRE_AT)])) == ["early", "middle", "late"]
    newest = expiring.query(C, order_by=[Order(EXPIRE_AT, descending=True)], limit=1)
    assert [(d.id, d.data[EXPIRE_AT]) for d in newest] == [("late", LATE)]


WRITES: dict[str, Callable[[DocumentStore, Any], object]] = {
    "create": lambda s, v: s.create(C, "x", {"v": 1, EXPIRE_AT: v}),
    "set": lambda s, v: s.set(C, "x", {"v": 1, EXPIRE_AT: v}),
    "update": lambda s, v: s.update(C, "kept", {EXPIRE_AT: v}),
    "txn-create": lambda s, v: s.transaction(lambda t: t.create(C, "x", {EXPIRE_AT: v})),
    "txn-set": lambda s, v: s.transaction(lambda t: t.set(C, "x", {EXPIRE_AT: v})),
    "txn-update": lambda s, v: s.transaction(lambda t: t.update(C, "kept", {EXPIRE_AT: v})),
}


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_malformed_expire_at_is_refused_on_every_write(
    document_store: DocumentStore, write: str, bad: Any
) -> None:
    kept = document_store.create(C, "kept", {"v": 0, EXPIRE_AT: EARLY})
    with pytest.raises(ValueError, match=EXPIRE_AT):
        WRITES[write](document_store, bad)
    assert document_store.get(C, "x") is None
    assert document_store.get(C, "kept") == kept


@pytest.mark.parametrize("op", ["<", "==", "in"])
@pytest.mark.parametrize("bad", ["2024-03-01", "2024-03-01T00:00:00Z", 1_709_251_200])
def test_malformed_filter_values_on_expire_at_are_refused(
    document_store: DocumentStore, op: Any, bad: Any
) -> None:
    value = [EARLY, bad] if op == "in" else bad
    with pytest.raises(ValueError, match=EXPIRE_AT):
        document_store.query(C, [Filter(EXPIRE_AT, op, value)])
