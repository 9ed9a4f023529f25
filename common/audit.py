"""The tamper-evident audit trail: one entry per request, chained under an HMAC.

Each instance writes its own chain (a random chain id per process): entry ``n`` carries
the MAC of entry ``n - 1``, and its own MAC covers every field but ``sealed``. The chain's
head document records the last sequence number and MAC, written in the same transaction
as the entries, so an entry altered, forged, removed from the middle or cut from the end
is found by ``common.audit_verify``. Entries hold hashes of the request and response and
of the caller's personal data (address, user agent); the personal data and a
prediction's inputs and outputs are kept only sealed (envelope-encrypted under a fresh
data key, bound to the entry id), so the trail holds no plaintext sensitive field, and
retention or erasure can drop the sealed part while the chain still verifies.

Writing is off the request path: ``append`` queues the event and a writer thread commits
queued entries in batches (group commit), so a store round trip is paid once per batch,
not once per request. The queue is bounded; when the store or the key service is down
long enough to fill it, ``append`` refuses (503) rather than answer unaudited.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import os
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from common.backends.base import DocumentStore, SecretSource, Transaction, key_secret
from common.crypto import EnvelopeCipher
from common.errors import ServiceError, UnavailableError
from common.registry import utcnow

log = logging.getLogger("ipo.audit")

ENTRIES = "audit_entries"
CHAINS = "audit_chains"
BATCH_MAX = 200
BATCH_LINGER_S = 0.02
APPEND_WAIT_S = 2.0
EXIT_FLUSH_S = 5.0
HOLDS_PERSONAL = "holds_personal"
"""True while the entry's sealed part (personal data, a prediction's bodies) is kept;
retention and erasure drop that part and set it False. Outside the MAC, like ``sealed``."""
MAC_EXCLUDED = frozenset({"mac", "sealed", HOLDS_PERSONAL})
SEALED_FIELDS = ("financial_data", "proprietary_metrics")
PERSONAL_FIELDS = ("client_ip", "user_agent", "forwarded_for")


@dataclass(frozen=True)
class AuditEvent:
    """What one request did; the writer adds the chain fields and the MAC."""

    operation: str
    function: str
    method: str
    path: str
    principal: str | None
    model_id: str | None
    model_version: str | None
    request_id: str
    request_sha256: str
    response_sha256: str
    status: int
    outcome: str
    """``ok`` below 400, else the error code (``unauthenticated``, ``forbidden``...)."""
    client_ip: str
    user_agent: str
    time: str
    forwarded_for: str = ""
    """X-Forwarded-For as received: behind API Gateway the client address is here, since
    ``client_ip`` is then Google's front end. Recorded, not trusted."""
    financial_data: str | None = None
    """The request body of a prediction; stored sealed only."""
    proprietary_metrics: str | None = None
    """The response body of a prediction; stored sealed only."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes a MAC covers: every field but the MAC and the sealed payload."""
    covered = {k: v for k, v in entry.items() if k not in MAC_EXCLUDED}
    return orjson.dumps(covered, option=orjson.OPT_SORT_KEYS)


def personal_digest(personal: dict[str, Any]) -> str:
    """What the MAC covers of an entry's personal data, so the data itself can be erased
    while the chain still verifies."""
    return sha256_hex(orjson.dumps(personal, option=orjson.OPT_SORT_KEYS))


def mac_of(key: bytes, entry: dict[str, Any]) -> str:
    return hmac.new(key, canonical(entry), hashlib.sha256).hexdigest()


def entry_id(chain: str, seq: int) -> str:
    return f"{chain}.{seq:012d}"


def audit_key(secrets: SecretSource, name: str) -> bytes:
    return key_secret(secrets, name, purpose="audit HMAC")


class AuditLog:
    """Appends entries to this process's chain through a background writer."""

    def __init__(
        self,
        documents: DocumentStore,
        secrets: SecretSource,
        *,
        secret_name: str,
        cipher: EnvelopeCipher,
        queue_size: int = 10_000,
    ) -> None:
        self._documents = documents
        self._secrets = secrets
        self._secret_name = secret_name
        self._cipher = cipher
        self._queue: queue.Queue[AuditEvent] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._pid = -1
        self._writer: threading.Thread | None = None
        self._key: bytes | None = None
        self._stopping = False
        self.chain = ""
        self._seq = 0
        self._prev_mac = ""
        self.written = 0
        self.write_failures = 0

    def _ensure_writer(self) -> None:
        """Start the writer, and a new chain, in this process (gunicorn forks workers)."""
        if self._pid == os.getpid() and self._writer is not None and self._writer.is_alive():
            return
        with self._lock:
            if self._pid == os.getpid() and self._writer is not None and self._writer.is_alive():
                return
            if self._pid != os.getpid():
                self.chain, self._seq, self._prev_mac = uuid.uuid4().hex, 0, ""
                self._queue = queue.Queue(maxsize=self._queue.maxsize)
            if self._pid == -1:
                atexit.register(self.flush, EXIT_FLUSH_S)  # SIGTERM ends workers via exit
            self._pid = os.getpid()
            self._writer = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._writer.start()

    def _get_key(self) -> bytes:
        if self._key is None:
            self._key = audit_key(self._secrets, self._secret_name)
        return self._key

    def append(self, event: AuditEvent) -> None:
        """Queue one entry; UnavailableError if the trail cannot keep up (fail closed)."""
        self._get_key()  # a missing secret is a configuration fault, reported now
        self._ensure_writer()
        try:
            self._queue.put(event, timeout=APPEND_WAIT_S)
        except queue.Full:
            raise UnavailableError(
                "the audit trail cannot be written; the request was not answered"
            ) from None

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued entry is written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop; what could not be written is reported."""
        if not self.flush(timeout_s):
            log.error(
                "audit entries not written at shutdown",
                extra={"audit_entries_lost": self._queue.unfinished_tasks},
            )
        self._stopping = True

    def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            # Linger briefly so a trickle of requests shares one transaction.
            linger_until = time.monotonic() + BATCH_LINGER_S
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, linger_until - time.monotonic())))
                except queue.Empty:
                    break
            pending = self._chain(batch)
            while not self._stopping:
                try:
                    self._commit(pending)
                    self.written += len(pending)
                    delay = 0.1
                    break
                except Exception as exc:  # keep the entries and retry: the trail loses nothing
                    self.write_failures += 1
                    log.warning(
                        "audit write failed; retrying: %s",
                        exc.message if isinstance(exc, ServiceError) else exc,
                        extra={"audit_write_failures": self.write_failures},
                    )
                    time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
                    delay = min(delay * 2, 5.0)
            for _ in batch:
                self._queue.task_done()

    def _chain(self, batch: list[AuditEvent]) -> list[_Pending]:
        """Number, link and MAC the batch; once done, a retry writes the same entries."""
        key = self._get_key()
        pending = []
        for event in batch:
            fields = dict(vars(event))  # flat fields: no deep copy needed
            payload = {name: fields.pop(name) for name in SEALED_FIELDS}
            personal = {name: fields.pop(name) for name in PERSONAL_FIELDS}
            payload["personal_info"] = personal
            self._seq += 1
            entry = {
                **fields,
                "personal_sha256": personal_digest(personal),
                "chain": self.chain,
                "seq": self._seq,
                "prev_mac": self._prev_mac,
            }
            entry["mac"] = mac_of(key, entry)
            entry[HOLDS_PERSONAL] = True
            self._prev_mac = entry["mac"]
            sealed = {k: v for k, v in payload.items() if v is not None}
            pending.append(_Pending(entry_id(self.chain, self._seq), entry, sealed))
        return pending

    def _commit(self, pending: list[_Pending]) -> None:
        # Sealing happens here, inside the retried write, so a key service outage delays
        # the entry instead of storing its payload in plaintext.
        ready = [
            (p.doc_id, {**p.entry, "sealed": self._cipher.seal(p.doc_id, p.payload)})
            for p in pending
        ]
        last_id, last = ready[-1]
        head = {
            "chain": self.chain,
            "last_seq": last["seq"],
            "last_mac": last["mac"],
            "last_entry": last_id,
            "updated_at": utcnow(),
        }

        def write(tx: Transaction) -> None:
            for doc_id, entry in ready:
                tx.set(ENTRIES, doc_id, entry)
            tx.set(CHAINS, self.chain, head)

        self._documents.transaction(write, max_attempts=3)


@dataclass(frozen=True)
class _Pending:
    doc_id: str
    entry: dict[str, Any]
    payload: dict[str, Any]
