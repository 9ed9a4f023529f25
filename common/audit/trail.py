"""The tamper-evident audit trail: one entry per request, chained under an HMAC.

Each instance writes its own chain (a random chain id per process): entry ``n`` carries
the MAC of entry ``n - 1``, and its own MAC covers every field but ``sealed`` and what
erasure may drop (``common.audit.macs``). The chain's head document records the last
sequence number and MAC under a MAC of its own, written in the same atomic write as the
entries, so an entry altered, forged, removed from the middle or cut from the end (the
head rewound too) is found by ``common.audit.verify``. Entries hold hashes of the request
and response and a keyed digest of the caller's personal data (address, user agent); the
personal data and a prediction's inputs and outputs are kept only sealed
(envelope-encrypted, bound to the entry id), so the trail holds no plaintext sensitive
field, and retention or erasure can drop the sealed part and the digest while the chain
still verifies.

An entry is stored before its request is answered: ``append`` returns only once the
write holding the entry has committed, and a request whose entry cannot be stored
within ``commit_timeout_s`` is answered 503 with Retry-After, its result withheld.
Concurrent requests of one instance share one batched write (group commit), so a store
round trip is paid once per batch, not once per request, and nothing is left for a thread to
write after the response. Each committed batch logs one ``audit anchor`` line (chain,
last sequence number, last MAC) that a log sink keeps outside the store; its leader logs
it after releasing the batch's other requests, which need not wait for a log write
(anchors are read as the newest of each chain, so their order does not matter).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from common.audit.macs import (
    HOLDS_PERSONAL,
    AuditKeys,
    audit_keys,
    head_mac,
    mac_of,
    personal_fields,
)
from common.audit.payload_log import PREDICTION_LOG, KeptPrediction
from common.backends.base import SET_MANY_MAX, DocumentStore, SecretSource, key_secret
from common.core.errors import ServiceError, UnavailableError
from common.registry.records import utcnow
from common.security.crypto import EnvelopeCipher

log = logging.getLogger("ipo.audit")
_anchors = logging.getLogger("ipo.audit.anchor")

ENTRIES = "audit_entries"
CHAINS = "audit_chains"
BATCH_MAX = 200
"""Entries in one batch. Each may bring a kept prediction, and the chain's head is one more
document, all in one ``set_many``: at most ``(SET_MANY_MAX - 1) // 2`` entries fit."""
COMMIT_TIMEOUT_S = 2.0
"""How long a request waits for its entry to be stored before it is refused (503)."""
RETRY_AFTER_S = 5
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
    kept: KeptPrediction | None = None
    """A prediction the payload log samples: stored beside the entry, in its write."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_id(chain: str, seq: int) -> str:
    return f"{chain}.{seq:012d}"


def audit_key(secrets: SecretSource, name: str) -> bytes:
    return key_secret(secrets, name, purpose="audit HMAC")


class AuditLog:
    """Appends entries to this process's chain; ``append`` returns once its entry is stored.

    Group commit: a request that finds no commit in progress becomes the leader and writes
    every entry waiting at that moment (up to ``batch_max``) in one batched write; requests
    that arrive meanwhile wait for the next batch. When a batch is stored, the leader wakes
    exactly the requests it stored and hands the lead to the oldest request still waiting,
    so no thread wakes only to find its entry not yet written. Under load one store round
    trip serves many requests; alone, a request pays one round trip.
    """

    def __init__(
        self,
        documents: DocumentStore,
        secrets: SecretSource,
        *,
        secret_name: str,
        cipher: EnvelopeCipher,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
        batch_max: int = BATCH_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._documents = documents
        self._secrets = secrets
        self._secret_name = secret_name
        self._cipher = cipher
        self._timeout_s = commit_timeout_s
        fits = (SET_MANY_MAX - 1) // 2
        if not 1 <= batch_max <= fits:
            raise ValueError(f"batch_max must be 1 to {fits} (one set_many), got {batch_max}")
        self._batch_max = batch_max
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        self._committing = False
        self._pid = -1
        self._keys: AuditKeys | None = None
        self.chain = ""
        self._seq = 0
        self._prev_mac = ""
        self.committed = 0
        """Entries stored by this process."""
        self.refused = 0
        """Requests this process did not answer because their entry could not be stored."""
        self.commit_failures = 0

    def _get_keys(self) -> AuditKeys:
        if self._keys is None:
            self._keys = audit_keys(audit_key(self._secrets, self._secret_name))
        return self._keys

    def sampling_key(self) -> bytes:
        return self._get_keys().sampling

    def _new_chain(self) -> None:
        self.chain, self._seq, self._prev_mac = uuid.uuid4().hex, 0, ""

    def append(self, event: AuditEvent) -> None:
        """Store one entry before returning; UnavailableError (503) when it cannot be
        stored within the commit timeout, and then nothing of it is kept."""
        self._get_keys()  # a missing secret is a configuration fault, reported now
        slot = _Slot(event, self._clock() + self._timeout_s)
        with self._lock:
            if self._pid != os.getpid():  # a forked worker starts a chain of its own
                self._pid = os.getpid()
                self._waiting, self._committing = [], False
                self._new_chain()
            self._waiting.append(slot)
            if not self._committing:
                self._committing = slot.leads = True
        while True:
            if not slot.leads:
                slot.woken.wait(max(0.0, slot.deadline - self._clock()))
            with self._lock:
                slot.woken.clear()
                if slot.state == "done":
                    return
                if slot.state == "failed":
                    self.refused += 1
                    raise _refusal(slot.reason)
                batch: list[_Slot] | None = None
                if slot.leads:
                    slot.leads = False
                    batch = self._take_batch()
                elif slot.deadline <= self._clock():
                    # Refused even if its batch lands later: an entry without an answer is
                    # harmless, an answer without an entry is what must never happen.
                    if slot.state == "waiting":
                        self._waiting.remove(slot)
                    slot.fail("timed out waiting for the store")
                    continue
            if batch is not None:
                stored: tuple[str, list[_Pending]] | None = None
                try:
                    if batch:
                        stored = self._lead(batch)
                finally:
                    self._hand_over(batch)
                if stored is not None:  # after the batch's requests are on their way
                    _anchor_line(*stored)

    def _hand_over(self, batch: list[_Slot]) -> None:
        """Wake the requests of a finished batch, and the oldest waiting one to lead next."""
        with self._lock:
            for done in batch:
                if done.state == "writing":  # _lead ended without settling it: never stored
                    done.fail("the audit writer stopped")
                done.woken.set()
            if self._waiting:
                successor = self._waiting[0]
                successor.leads = True
                successor.woken.set()
            else:
                self._committing = False

    def _take_batch(self) -> list[_Slot]:
        """The waiting slots for one write, oldest first; expired ones fail now."""
        now = self._clock()
        batch: list[_Slot] = []
        while self._waiting and len(batch) < self._batch_max:
            slot = self._waiting.pop(0)
            if slot.deadline <= now:
                slot.fail("timed out waiting for its batch")
                slot.woken.set()
            else:
                slot.state = "writing"
                batch.append(slot)
        return batch

    def _lead(self, batch: list[_Slot]) -> tuple[str, list[_Pending]] | None:
        """Write one batch, retrying with jitter until its oldest request's deadline; the
        chain and entries written, for the anchor line, or None if the batch was refused.

        After a failure the chain starts afresh under a new id: a commit reported failed
        may still have been applied, and the next batch must not overwrite or fork it."""
        deadline = min(slot.deadline for slot in batch)
        try:
            pending = self._chain([slot.event for slot in batch])
        except Exception as exc:  # an entry that cannot be formed: refuse, never answer
            log.exception("audit entries could not be formed; their requests are refused")
            self._new_chain()
            for slot in batch:
                slot.fail(type(exc).__name__)
            return None
        delay = 0.02
        while True:
            try:
                self._commit(pending)
            except Exception as exc:  # the store or the key service; the batch is refused
                self.commit_failures += 1
                reason = exc.message if isinstance(exc, ServiceError) else type(exc).__name__
                pause = delay * (0.5 + random.random())  # noqa: S311 - jitter
                if self._clock() + pause < deadline:
                    log.warning(
                        "audit write failed; retrying: %s",
                        reason,
                        extra={"audit_commit_failures": self.commit_failures},
                    )
                    time.sleep(pause)
                    delay = min(delay * 2, 1.0)
                    continue
                log.error(
                    "audit batch not written; its requests are refused: %s",
                    reason,
                    extra={"audit_entries_refused": len(batch), "chain": self.chain},
                )
                self._new_chain()
                for slot in batch:
                    slot.fail(reason)
                return None
            self.committed += len(pending)
            for slot in batch:
                if slot.state == "writing":
                    slot.state = "done"
            return self.chain, pending

    def _chain(self, batch: list[AuditEvent]) -> list[_Pending]:
        """Number, link and MAC the batch; a retry writes the same entries."""
        keys = self._get_keys()
        pending = []
        for event in batch:
            fields = dict(vars(event))  # flat fields: no deep copy needed
            kept = fields.pop("kept")
            payload = {name: fields.pop(name) for name in SEALED_FIELDS}
            personal = {name: fields.pop(name) for name in PERSONAL_FIELDS}
            payload["personal_info"] = personal
            self._seq += 1
            entry = {
                **fields,
                **personal_fields(keys.personal, personal),
                "chain": self.chain,
                "seq": self._seq,
                "prev_mac": self._prev_mac,
            }
            entry["mac"] = mac_of(keys.entry, entry)
            entry[HOLDS_PERSONAL] = True
            self._prev_mac = entry["mac"]
            sealed = {k: v for k, v in payload.items() if v is not None}
            pending.append(_Pending(entry_id(self.chain, self._seq), entry, sealed, kept))
        return pending

    def _commit(self, pending: list[_Pending]) -> None:
        # Sealed here, inside the retried write: a key service outage delays the entry (or
        # refuses its request) instead of storing its payload in plaintext.
        ready = [
            (p.doc_id, {**p.entry, "sealed": self._cipher.seal(p.doc_id, p.payload)})
            for p in pending
        ]
        kept = [(p.doc_id, p.kept.document(p.doc_id, self._cipher)) for p in pending if p.kept]
        last_id, last = ready[-1]
        head: dict[str, Any] = {
            "chain": self.chain,
            "last_seq": last["seq"],
            "last_mac": last["mac"],
            "last_entry": last_id,
            "updated_at": utcnow(),
        }
        head["mac"] = head_mac(self._get_keys().head, head)

        # One batched write, not a transaction: nothing here is read first, and Firestore
        # commits a batch in one round trip where a transaction takes two.
        self._documents.set_many(
            [(ENTRIES, doc_id, entry) for doc_id, entry in ready]
            + [(PREDICTION_LOG, doc_id, record) for doc_id, record in kept]
            + [(CHAINS, self.chain, head)]
        )


def _refusal(reason: str) -> UnavailableError:
    return UnavailableError(
        f"the audit trail could not record this request ({reason}); it was not answered",
        retry_after_s=RETRY_AFTER_S,
    )


def _anchor_line(chain: str, pending: list[_Pending]) -> None:
    """One line per committed batch, exported by a log sink to a bucket nobody can delete
    from: the chain's head as it stood, to check the store against (``verify_audit``)."""
    last = pending[-1]
    _anchors.info(
        "audit anchor",
        extra={
            "audit_anchor": {
                "chain": chain,
                "last_seq": last.entry["seq"],
                "last_mac": last.entry["mac"],
                "last_entry": last.doc_id,
                "entries": len(pending),
            }
        },
    )


@dataclass
class _Slot:
    event: AuditEvent
    deadline: float
    state: Literal["waiting", "writing", "done", "failed"] = "waiting"
    reason: str = ""
    leads: bool = False
    """Set (under the log's lock) when this request is to write the next batch."""
    woken: threading.Event = field(default_factory=threading.Event)

    def fail(self, reason: str) -> None:
        self.state, self.reason = "failed", reason


@dataclass(frozen=True)
class _Pending:
    doc_id: str
    entry: dict[str, Any]
    payload: dict[str, Any]
    kept: KeptPrediction | None = None
