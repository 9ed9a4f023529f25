"""Checks the audit trail: every entry's MAC, every chain's links, every chain's head.

Without the HMAC secret nobody can write an entry or a head whose MAC verifies, so an
altered entry and a forged one both show as a MAC mismatch; a removed entry shows as a
gap in its chain's sequence or a broken link; entries cut from the end show against the
chain's head, written atomically with them, and a head rewound to match shows as a head
MAC mismatch. With a cipher the sealed payloads are opened and checked against the
digests the MAC covers.

The store alone cannot show a whole chain deleted with its head, nor a genuine earlier
head put back (copied before, then restored with the entries after it deleted). The
``audit anchor`` lines each committed batch logs, kept by a log sink in a bucket nobody
can delete from, can: ``check_anchors`` compares the newest anchor of each chain with the
store. Heads written before heads carried a MAC are accepted only when an anchor vouches
for them (same last sequence number and MAC); otherwise each is an ``unkeyed_head``.
"""

from __future__ import annotations

import hmac
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from common.audit.macs import (
    PERSONAL_COMMIT,
    PERSONAL_DIGEST,
    PERSONAL_NONCE,
    AuditKeys,
    audit_keys,
    commitment,
    head_mac,
    legacy_personal_digest,
    mac_of,
    personal_digest,
)
from common.audit.trail import CHAINS, ENTRIES, entry_id, sha256_hex
from common.backends.base import DocumentStore
from common.core.errors import ServiceError
from common.security.crypto import EnvelopeCipher

ProblemKind = Literal["altered", "missing", "truncated", "forged", "payload", "unkeyed_head"]


@dataclass(frozen=True)
class AuditProblem:
    kind: ProblemKind
    chain: str
    entry_id: str | None
    detail: str


@dataclass
class AuditReport:
    chains: int = 0
    entries: int = 0
    problems: list[AuditProblem] = field(default_factory=list)
    anchors: int = 0
    """Chains checked against an exported anchor."""
    unanchored: list[str] = field(default_factory=list)
    """Chains in the store that no anchor given names: checked against the store alone.
    Not a problem in itself (the newest chains may not be exported yet), but what the
    anchors do not cover."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chains": self.chains,
            "entries": self.entries,
            "anchors": self.anchors,
            "unanchored_chains": self.unanchored,
            "problems": [vars(p) for p in self.problems],
        }


def verify_audit(
    documents: DocumentStore,
    key: bytes,
    *,
    cipher: EnvelopeCipher | None = None,
    anchors: dict[str, Anchor] | None = None,
) -> AuditReport:
    report, keys = AuditReport(), audit_keys(key)
    heads = {doc.id: doc.data for doc in documents.query(CHAINS)}
    by_chain: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for doc in documents.query(ENTRIES):
        chain = doc.data.get("chain")
        by_chain[chain if isinstance(chain, str) else ""].append((doc.id, doc.data))
    for chain in sorted(set(heads) | set(by_chain)):
        report.chains += 1
        entries = sorted(by_chain.get(chain, []), key=lambda item: _seq(item[1]))
        report.entries += len(entries)
        head = heads.get(chain)
        if head is None:
            report.problems.append(
                AuditProblem(
                    "forged", chain, None, f"{len(entries)} entries in a chain with no head"
                )
            )
            continue
        _check_head(report, chain, head, (anchors or {}).get(chain), keys)
        _check_chain(report, chain, head, entries, keys, cipher)
    if anchors:
        check_anchors(documents, anchors, report)
        report.unanchored = sorted((set(heads) | set(by_chain)) - set(anchors))
    return report


def _same(stored: object, expected: str) -> bool:
    """Constant-time equality that a stored non-ASCII value cannot turn into a crash
    (which would read as "could not check" instead of tampering)."""
    return hmac.compare_digest(str(stored).encode(), expected.encode())


def _seq(entry: dict[str, Any], name: str = "seq") -> int:
    seq = entry.get(name)
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else -1


def _check_head(
    report: AuditReport, chain: str, head: dict[str, Any], anchor: Anchor | None, keys: AuditKeys
) -> None:
    """A head must carry its MAC; one without (written before heads were keyed, or
    stripped) passes only when an exported anchor shows the same head."""
    mac = head.get("mac")
    if mac is not None:
        if not _same(str(mac), head_mac(keys.head, head)):
            report.problems.append(
                AuditProblem(
                    "altered",
                    chain,
                    None,
                    "the chain head's MAC does not match: rewritten (entries cut from the end "
                    "and the head rewound?), or written without the key",
                )
            )
        return
    if (
        anchor is not None
        and anchor.last_seq == _seq(head, "last_seq")
        and _same(anchor.last_mac, str(head.get("last_mac", "")))
    ):
        return
    report.problems.append(
        AuditProblem(
            "unkeyed_head",
            chain,
            None,
            "the chain head carries no MAC (written before heads were keyed, or stripped) and "
            "no anchor shows this head: entries cut from the end cannot be ruled out",
        )
    )


def _digest_intact(entry: dict[str, Any]) -> bool:
    """The erasable digest, while kept, matches the commitment the entry's MAC covers."""
    if PERSONAL_COMMIT not in entry or (
        PERSONAL_DIGEST not in entry and PERSONAL_NONCE not in entry
    ):
        return True
    nonce, digest = str(entry.get(PERSONAL_NONCE, "")), str(entry.get(PERSONAL_DIGEST, ""))
    return _same(commitment(nonce, digest), str(entry[PERSONAL_COMMIT]))


def _check_chain(
    report: AuditReport,
    chain: str,
    head: dict[str, Any],
    entries: list[tuple[str, dict[str, Any]]],
    keys: AuditKeys,
    cipher: EnvelopeCipher | None,
) -> None:
    problems = report.problems
    last_seq = _seq(head, "last_seq")
    expected, prev_mac = 1, ""
    for doc_id, entry in entries:
        seq = _seq(entry)
        if seq > last_seq:
            problems.append(AuditProblem("forged", chain, doc_id, "entry past the chain's head"))
            continue
        if seq > expected:
            problems.append(
                AuditProblem(
                    "missing",
                    chain,
                    entry_id(chain, expected),
                    f"entries {expected}..{seq - 1} removed",
                )
            )
            prev_mac = ""  # unknown: the link check resumes after the gap
        if doc_id != entry_id(chain, seq) or not _same(
            str(entry.get("mac", "")), mac_of(keys.entry, entry)
        ):
            problems.append(
                AuditProblem(
                    "altered",
                    chain,
                    doc_id,
                    "MAC does not match: altered, or written without the key",
                )
            )
        elif prev_mac and entry.get("prev_mac") != prev_mac:
            problems.append(
                AuditProblem("missing", chain, doc_id, "does not follow the entry before it")
            )
        elif not _digest_intact(entry):
            problems.append(
                AuditProblem(
                    "altered", chain, doc_id, "personal_sha256 does not match its commitment"
                )
            )
        elif cipher is not None and "sealed" in entry:
            _check_payload(report, chain, doc_id, entry, keys, cipher)
        expected, prev_mac = seq + 1, str(entry.get("mac", ""))
    if expected <= last_seq:
        problems.append(
            AuditProblem(
                "truncated",
                chain,
                entry_id(chain, expected),
                f"entries {expected}..{last_seq} removed from the end of the chain",
            )
        )
    elif entries and head.get("last_mac") != entries[-1][1].get("mac"):
        problems.append(
            AuditProblem("altered", chain, entries[-1][0], "last entry differs from the chain head")
        )


def _check_payload(
    report: AuditReport,
    chain: str,
    doc_id: str,
    entry: dict[str, Any],
    keys: AuditKeys,
    cipher: EnvelopeCipher,
) -> None:
    try:
        opened = cipher.open(doc_id, entry["sealed"])
    except ServiceError as exc:
        report.problems.append(AuditProblem("payload", chain, doc_id, exc.message))
        return
    personal = opened.get("personal_info")
    if isinstance(personal, dict) and _digest(keys, entry, personal) != entry.get(PERSONAL_DIGEST):
        report.problems.append(
            AuditProblem("payload", chain, doc_id, "sealed personal_info does not match its hash")
        )
    for name, hash_field in (
        ("financial_data", "request_sha256"),
        ("proprietary_metrics", "response_sha256"),
    ):
        value = opened.get(name)
        if isinstance(value, str):
            digest = sha256_hex(value.encode())
            if digest != entry.get(hash_field):
                report.problems.append(
                    AuditProblem(
                        "payload", chain, doc_id, f"sealed {name} does not match {hash_field}"
                    )
                )


def _digest(keys: AuditKeys, entry: dict[str, Any], personal: dict[str, Any]) -> str:
    if PERSONAL_COMMIT in entry:
        return personal_digest(keys.personal, personal)
    return legacy_personal_digest(personal)


@dataclass(frozen=True)
class Anchor:
    chain: str
    last_seq: int
    last_mac: str


def read_anchors(lines: Iterable[str]) -> dict[str, Anchor]:
    """The newest anchor of each chain in exported log lines: Cloud Logging entries as a
    sink writes them (``jsonPayload.audit_anchor``) or lines as a function prints them
    (``audit_anchor``). Other lines are passed over; a malformed anchor is a ValueError."""
    newest: dict[str, Anchor] = {}
    for number, line in enumerate(lines, 1):
        if "audit_anchor" not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise ValueError(f"line {number}: not JSON") from None
        payload = entry.get("jsonPayload", entry) if isinstance(entry, dict) else None
        found = payload.get("audit_anchor") if isinstance(payload, dict) else None
        if found is None:
            continue
        anchor = _anchor(found, number)
        known = newest.get(anchor.chain)
        if known is None or anchor.last_seq > known.last_seq:
            newest[anchor.chain] = anchor
    return newest


def _anchor(found: object, number: int) -> Anchor:
    if not isinstance(found, dict):
        raise ValueError(f"line {number}: audit_anchor is not an object")
    chain, seq, mac = found.get("chain"), found.get("last_seq"), found.get("last_mac")
    if (
        not isinstance(chain, str)
        or not chain
        or not isinstance(seq, int)
        or isinstance(seq, bool)
        or seq < 1
        or not isinstance(mac, str)
        or len(mac) != 64
    ):
        raise ValueError(f"line {number}: audit_anchor needs chain, last_seq >= 1 and last_mac")
    return Anchor(chain, seq, mac)


def check_anchors(
    documents: DocumentStore, anchors: dict[str, Anchor], report: AuditReport
) -> None:
    """Add a problem for each chain the store holds less of than its anchor shows."""
    for chain, anchor in sorted(anchors.items()):
        report.anchors += 1
        head = documents.get(CHAINS, chain)
        anchored = entry_id(chain, anchor.last_seq)
        if head is None:
            report.problems.append(
                AuditProblem(
                    "missing",
                    chain,
                    None,
                    f"the chain is gone from the store; an anchor shows {anchor.last_seq} entries",
                )
            )
            continue
        last_seq = _seq(head.data, "last_seq")
        if last_seq < anchor.last_seq:
            report.problems.append(
                AuditProblem(
                    "truncated",
                    chain,
                    entry_id(chain, last_seq + 1),
                    f"entries {last_seq + 1}..{anchor.last_seq} removed from the end of the "
                    "chain and its head rewound; an anchor shows them",
                )
            )
            continue
        entry = documents.get(ENTRIES, anchored)
        if entry is None or not _same(str(entry.data.get("mac", "")), anchor.last_mac):
            report.problems.append(
                AuditProblem(
                    "altered",
                    chain,
                    anchored,
                    "the entry differs from the one its anchor names (removed or replaced)",
                )
            )
