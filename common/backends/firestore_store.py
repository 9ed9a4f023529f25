"""Cloud Firestore as the document store (and its emulator, for tests and laptops).

A document's revision is its ``update_time`` with nanoseconds, so a precondition is
Firestore's own ``last_update_time`` check. Every call carries the configured timeout
and a retry bounded by that same deadline; nothing waits on the library's 60-second
defaults. Transactions are driven here rather than by ``@transactional`` so that begin
and commit get timeouts too and contention is retried with jittered backoff. Every write
goes through ``firestore_values.encode`` and every read through ``decode`` (``expire_at``
is held as a Timestamp).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_transient_error
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import firestore
from google.cloud.firestore_v1 import transaction as fs_transaction
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.document import DocumentReference

from common.backends import _support
from common.backends.base import Document, DocumentStore, Filter, Order, Transaction, check_name
from common.backends.firestore_values import decode, encode, filter_value, plain
from common.core.config import Settings
from common.core.errors import (
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    ServiceError,
    UnavailableError,
)

T = TypeVar("T")
_WRITE_ATTEMPTS = 10


def _revision(stamp: datetime) -> str:
    """RFC 3339 in UTC with all nine fraction digits, so equal times give equal text."""
    nanos = getattr(stamp, "nanosecond", stamp.microsecond * 1000)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


class _Contended(Exception):
    """A read inside a transaction was aborted by a rival; the attempt must be rerun."""


class _TimedTransaction(fs_transaction.Transaction):
    """The library's transaction with our timeout on begin, commit and rollback.

    The library sends those three calls with the 60-second defaults, so a transaction
    against an unreachable server would hang for a minute. The bodies mirror the
    library's; commit and rollback are not retried (a commit may have been applied).
    """

    def __init__(self, client: firestore.Client, timeout_s: float, retry: Retry) -> None:
        super().__init__(client, max_attempts=1)
        self._timeout_s = timeout_s
        self._retry = retry

    def _request(self, **fields: Any) -> dict[str, Any]:
        return {"database": self._client._database_string, **fields}

    def _begin(self, retry_id: bytes | None = None) -> None:
        response = self._client._firestore_api.begin_transaction(
            request=self._request(options=self._options_protobuf(retry_id)),
            metadata=self._client._rpc_metadata,
            retry=self._retry,
            timeout=self._timeout_s,
        )
        self._id = response.transaction

    def _commit(self) -> list[Any]:
        response = self._client._firestore_api.commit(
            request=self._request(writes=self._write_pbs, transaction=self._id),
            metadata=self._client._rpc_metadata,
            retry=None,
            timeout=self._timeout_s,
        )
        self._clean_up()
        self.write_results = list(response.write_results)
        self.commit_time = response.commit_time
        return self.write_results

    def _rollback(self) -> None:
        try:
            self._client._firestore_api.rollback(
                request=self._request(transaction=self._id),
                metadata=self._client._rpc_metadata,
                retry=None,
                timeout=self._timeout_s,
            )
        finally:
            self._clean_up()


class _FirestoreTransaction(Transaction):
    def __init__(self, store: FirestoreDocumentStore, txn: _TimedTransaction) -> None:
        self._store = store
        self._txn: _TimedTransaction | None = txn
        self._wrote = False

    def _live(self) -> _TimedTransaction:
        if self._txn is None:
            raise RuntimeError("the transaction has finished")
        return self._txn

    def _writing(self) -> _TimedTransaction:
        txn = self._live()
        self._wrote = True
        return txn

    def close(self) -> None:
        self._txn = None

    def get(self, collection: str, doc_id: str) -> Document | None:
        txn = self._live()
        if self._wrote:
            raise ValueError("transaction reads must come before its writes")
        ref = self._store._ref(collection, doc_id)
        try:
            with self._store._mapped(f"read {collection}/{doc_id}"):
                snaps = txn.get(ref, retry=self._store._retry, timeout=self._store._timeout_s)
                return self._store._document(next(iter(snaps)))
        except gexc.Aborted:
            raise _Contended from None

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        self._writing().create(self._store._ref(collection, doc_id), encode(plain(data)))

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        self._writing().set(self._store._ref(collection, doc_id), encode(plain(data)))

    def update(self, collection: str, doc_id: str, changes: dict[str, Any]) -> None:
        _support.check_changes(changes)
        self._writing().update(self._store._ref(collection, doc_id), encode(plain(changes)))

    def delete(self, collection: str, doc_id: str) -> None:
        self._writing().delete(self._store._ref(collection, doc_id))


class FirestoreDocumentStore(DocumentStore):
    """The client is built on first use: authenticating costs start-up time."""

    def __init__(self, settings: Settings) -> None:
        if not settings.gcp_project:
            raise ValueError("IPO_GCP_PROJECT is required for the Firestore document store")
        self._project = settings.gcp_project
        self._database = settings.firestore_database
        self._emulator_host = settings.firestore_emulator_host
        self._timeout_s = settings.backend_timeout_s
        self._retry = Retry(
            predicate=if_transient_error,
            initial=0.05,
            maximum=1.0,
            multiplier=2.0,
            timeout=settings.backend_timeout_s,
        )
        self._client: firestore.Client | None = None
        self._lock = threading.Lock()

    def _get_client(self) -> firestore.Client:
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> firestore.Client:
        if not self._emulator_host:
            try:
                return firestore.Client(project=self._project, database=self._database)
            except GoogleAuthError as exc:
                raise UnavailableError(f"Firestore credentials: {exc}") from None
        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]  # untyped upstream
        client = firestore.Client(
            project=self._project, database=self._database, credentials=anonymous
        )
        # The client honours only the FIRESTORE_EMULATOR_HOST environment variable, read
        # once in its constructor into ``_emulator_host``; every later decision (plain-text
        # channel, target, "Bearer owner" metadata) reads that attribute. Setting it here,
        # before the first call, points this one client at the emulator without changing
        # os.environ for the whole process. Fail loudly if a release renames it.
        if "_emulator_host" not in vars(client):
            raise RuntimeError("google-cloud-firestore no longer has Client._emulator_host")
        client._emulator_host = self._emulator_host
        return client

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        """Translate the client's exceptions; only ServiceError and ValueError leave."""
        try:
            yield
        except (ServiceError, _Contended):
            raise
        except gexc.NotFound:
            raise NotFoundError(f"{what}: not found") from None
        except gexc.AlreadyExists:
            raise ConflictError(f"{what}: already exists") from None
        except gexc.InvalidArgument as exc:
            raise ValueError(f"{what}: Firestore rejected the request: {exc.message}") from None
        except (gexc.GoogleAPICallError, gexc.RetryError, GoogleAuthError) as exc:
            raise UnavailableError(
                f"Firestore unavailable ({what}): {type(exc).__name__}: {exc}"
            ) from None

    def _ref(self, collection: str, doc_id: str) -> DocumentReference:
        check_name("collection", collection)
        check_name("document id", doc_id)
        return self._get_client().collection(collection).document(doc_id)

    def _document(self, snap: Any) -> Document | None:
        if not snap.exists:
            return None
        return Document(snap.id, decode(snap.to_dict() or {}), _revision(snap.update_time))

    def _snapshot(self, ref: DocumentReference, what: str) -> Any:
        with self._mapped(what):
            return ref.get(retry=self._retry, timeout=self._timeout_s)

    def get(self, collection: str, doc_id: str) -> Document | None:
        ref = self._ref(collection, doc_id)
        return self._document(self._snapshot(ref, f"get {collection}/{doc_id}"))

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> Document:
        ref, written = self._ref(collection, doc_id), plain(data)
        with self._mapped(f"create {collection}/{doc_id}"):
            result = ref.create(encode(written), retry=self._retry, timeout=self._timeout_s)
        return Document(doc_id, written, _revision(result.update_time))

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> Document:
        ref, written = self._ref(collection, doc_id), plain(data)
        with self._mapped(f"set {collection}/{doc_id}"):
            result = ref.set(encode(written), retry=self._retry, timeout=self._timeout_s)
        return Document(doc_id, written, _revision(result.update_time))

    def _unless_changed(self, what: str, call: Callable[[], T]) -> T | None:
        """``call``'s result, or None when its ``last_update_time`` precondition failed."""
        with self._mapped(what):
            try:
                return call()
            except gexc.FailedPrecondition:
                return None

    def update(
        self,
        collection: str,
        doc_id: str,
        changes: dict[str, Any],
        *,
        if_revision: str | None = None,
    ) -> Document:
        """Read, then write on condition that nothing changed, so the result is exact."""
        _support.check_changes(changes)
        ref, written = self._ref(collection, doc_id), plain(changes)
        stored, what = encode(written), f"update {collection}/{doc_id}"
        for attempt in range(_WRITE_ATTEMPTS):
            snap = self._snapshot(ref, what)
            current = self._document(snap)
            if current is None:
                raise NotFoundError(f"{collection}/{doc_id} does not exist")
            if if_revision is not None and current.revision != if_revision:
                raise PreconditionFailedError(f"{collection}/{doc_id} changed since it was read")
            option = self._get_client().write_option(last_update_time=snap.update_time)
            write = partial(
                ref.update, stored, option=option, retry=self._retry, timeout=self._timeout_s
            )
            result = self._unless_changed(what, write)
            if result is not None:
                return Document(doc_id, {**current.data, **written}, _revision(result.update_time))
            if if_revision is not None:  # written between our read and our write
                raise PreconditionFailedError(f"{collection}/{doc_id} changed since it was read")
            time.sleep(_support.backoff_s(attempt, base_s=0.02, cap_s=0.5))
        raise _support.contended(_WRITE_ATTEMPTS)

    def delete(self, collection: str, doc_id: str, *, if_revision: str | None = None) -> None:
        ref, what = self._ref(collection, doc_id), f"delete {collection}/{doc_id}"
        if if_revision is None:
            with self._mapped(what):
                ref.delete(retry=self._retry, timeout=self._timeout_s)
            return
        snap = self._snapshot(ref, what)
        if not snap.exists:
            return
        if _revision(snap.update_time) != if_revision:
            raise PreconditionFailedError(f"{collection}/{doc_id} changed since it was read")
        option = self._get_client().write_option(last_update_time=snap.update_time)
        delete = partial(ref.delete, option=option, retry=self._retry, timeout=self._timeout_s)
        if self._unless_changed(what, delete) is None and self._snapshot(ref, what).exists:
            raise PreconditionFailedError(f"{collection}/{doc_id} changed since it was read")

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
    ) -> list[Document]:
        check_name("collection", collection)
        _support.check_limit(limit)
        for flt in filters:
            _support.check_filter(flt)
        if limit == 0:
            return []
        query: Any = self._get_client().collection(collection)
        for flt in filters:
            query = query.where(filter=FieldFilter(flt.field, flt.op, filter_value(flt)))
        for order in order_by:
            direction = (
                firestore.Query.DESCENDING if order.descending else firestore.Query.ASCENDING
            )
            query = query.order_by(order.field, direction=direction)
        if limit is not None:
            query = query.limit(limit)
        with self._mapped(f"query {collection}"):
            snaps = list(query.stream(retry=self._retry, timeout=self._timeout_s))
        return [doc for doc in map(self._document, snaps) if doc is not None]

    def set_many(self, documents: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """One batched write: a single commit, with no transaction to begin first. A retry
        after a lost answer writes the same documents again, which changes nothing."""
        _support.check_set_many(documents)
        if not documents:
            return
        batch = self._get_client().batch()
        for collection, doc_id, data in documents:
            batch.set(self._ref(collection, doc_id), encode(plain(data)))
        with self._mapped(f"set {len(documents)} documents"):
            batch.commit(retry=self._retry, timeout=self._timeout_s)

    def transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 20) -> T:
        """Rerun ``fn`` when Firestore aborts the attempt for contention.

        An aborted attempt keeps its place in line through ``retry_transaction``. The
        first backoff (0.1-0.2 s) is long enough for a rival to finish several
        transactions: the emulator breaks a read-lock deadlock only after a fixed
        2-second lock timeout, and shorter pauses measured 3-4 times as many collisions.
        """
        _support.check_attempts(max_attempts)
        client = self._get_client()
        retry_id: bytes | None = None
        for attempt in range(max_attempts):
            txn = _TimedTransaction(client, self._timeout_s, self._retry)
            with self._mapped("begin transaction"):
                txn._begin(retry_id=retry_id)
            retry_id = retry_id or txn._id
            adapter = _FirestoreTransaction(self, txn)
            try:
                result = fn(adapter)
                adapter.close()
                txn._commit()
                return result
            except (gexc.Aborted, _Contended):
                pass  # the server has already ended an aborted transaction
            except (gexc.GoogleAPICallError, gexc.RetryError, GoogleAuthError) as exc:
                self._rollback_quietly(txn)
                with self._mapped("commit transaction"):
                    raise exc from None
            except BaseException:
                self._rollback_quietly(txn)
                raise
            finally:
                adapter.close()
            time.sleep(_support.backoff_s(attempt, base_s=0.2, cap_s=2.0))
        raise _support.contended(max_attempts)

    @staticmethod
    def _rollback_quietly(txn: _TimedTransaction) -> None:
        """Release the attempt's locks; a failed rollback only delays their expiry."""
        if txn.in_progress:
            with suppress(gexc.GoogleAPICallError, gexc.RetryError, GoogleAuthError):
                txn._rollback()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]  # untyped upstream
