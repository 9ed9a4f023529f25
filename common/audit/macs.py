"""The audit trail's MACs and keyed digests, each purpose under its own key.

An entry's MAC is keyed by the audit secret itself (as every entry ever written was);
the chain head's MAC and the caller's personal digest use keys derived from that secret
with a purpose label, so no key's bytes serve two purposes.

The personal digest (HMAC of the caller's address and user agent) lets entries of one
caller be matched while the key is held, and cannot be reversed by enumerating addresses
without it. Erasure must be able to drop it, so the entry's MAC does not cover it: it
covers ``personal_commit``, SHA-256 of a random per-entry nonce and the digest. The nonce
and the digest are dropped together; what stays is a commitment nobody can link to a
caller or to another entry, and the MAC still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

HOLDS_PERSONAL = "holds_personal"
"""True while the entry's sealed part (personal data, a prediction's bodies) is kept;
retention and erasure drop that part and set it False. Outside the MAC, like ``sealed``."""
PERSONAL_DIGEST = "personal_sha256"
PERSONAL_NONCE = "personal_nonce"
PERSONAL_COMMIT = "personal_commit"
ERASABLE = (PERSONAL_DIGEST, PERSONAL_NONCE)
"""Fields erasure drops along with ``sealed``, in entries that carry a commitment."""
MAC_EXCLUDED = frozenset({"mac", "sealed", HOLDS_PERSONAL})
ERASABLE_EXCLUDED = MAC_EXCLUDED | frozenset(ERASABLE)


@dataclass(frozen=True)
class AuditKeys:
    entry: bytes
    head: bytes
    personal: bytes
    sampling: bytes
    """Keys the payload log's choice of requests (``common.audit.payload_log.sampled``)."""


def audit_keys(secret: bytes) -> AuditKeys:
    """The entry key (the secret) and the keys derived from it for heads and digests."""
    return AuditKeys(
        entry=secret,
        head=_derive(secret, "chain-head-mac"),
        personal=_derive(secret, "personal-digest"),
        sampling=_derive(secret, "payload-log-sampling"),
    )


def _derive(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, b"ipo-audit-key/v1/" + purpose.encode(), hashlib.sha256).digest()


def _json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry's MAC covers. Entries written before the personal commitment
    existed carry a plain digest that their MAC covers, and keep it."""
    excluded = ERASABLE_EXCLUDED if PERSONAL_COMMIT in entry else MAC_EXCLUDED
    return _json({k: v for k, v in entry.items() if k not in excluded})


def mac_of(key: bytes, entry: dict[str, Any]) -> str:
    return hmac.new(key, canonical(entry), hashlib.sha256).hexdigest()


def head_mac(key: bytes, head: dict[str, Any]) -> str:
    """The MAC of a chain head: every field it holds but the MAC itself."""
    covered = {k: v for k, v in head.items() if k != "mac"}
    return hmac.new(key, _json(covered), hashlib.sha256).hexdigest()


def personal_digest(key: bytes, personal: dict[str, Any]) -> str:
    return hmac.new(key, _json(personal), hashlib.sha256).hexdigest()


def legacy_personal_digest(personal: dict[str, Any]) -> str:
    """The unkeyed digest of entries written before the keyed one; only to verify them."""
    return hashlib.sha256(_json(personal)).hexdigest()


def commitment(nonce: str, digest: str) -> str:
    return hashlib.sha256(f"{nonce}:{digest}".encode()).hexdigest()


def personal_fields(key: bytes, personal: dict[str, Any]) -> dict[str, str]:
    """The digest, its nonce and the commitment the MAC covers, for a new entry."""
    digest, nonce = personal_digest(key, personal), secrets.token_hex(16)
    return {
        PERSONAL_DIGEST: digest,
        PERSONAL_NONCE: nonce,
        PERSONAL_COMMIT: commitment(nonce, digest),
    }
