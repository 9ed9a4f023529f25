"""Checks the audit trail: every entry's MAC, every chain's links, every chain's head.

Without the HMAC secret nobody can write an entry whose MAC verifies, so an altered
entry and a forged one both show as a MAC mismatch; a removed entry shows as a gap in
its chain's sequence or a broken link; entries cut from the end show against the chain's
head, written atomically with them. With a cipher the sealed payloads are opened and
checked against the hashes the MAC covers.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from common.audit import CHAINS, ENTRIES, entry_id, mac_of, personal_digest, sha256_hex
from common.backends.base import DocumentStore
from common.crypto import EnvelopeCipher
from common.errors import ServiceError

ProblemKind = Literal["altered", "missing", "truncated", "forged", "payload"]


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

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chains": self.chains,
            "entries": self.entries,
            "problems": [vars(p) for p in self.problems],
        }


def verify_audit(
    documents: DocumentStore, key: bytes, *, cipher: EnvelopeCipher | None = None
) -> AuditReport:
    report = AuditReport()
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
        _check_chain(report, chain, head, entries, key, cipher)
    return report


def _seq(entry: dict[str, Any], name: str = "seq") -> int:
    seq = entry.get(name)
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else -1


def _check_chain(
    report: AuditReport,
    chain: str,
    head: dict[str, Any],
    entries: list[tuple[str, dict[str, Any]]],
    key: bytes,
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
        if doc_id != entry_id(chain, seq) or not hmac.compare_digest(
            str(entry.get("mac", "")), mac_of(key, entry)
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
        elif cipher is not None and "sealed" in entry:
            _check_payload(report, chain, doc_id, entry, cipher)
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
    report: AuditReport, chain: str, doc_id: str, entry: dict[str, Any], cipher: EnvelopeCipher
) -> None:
    try:
        opened = cipher.open(doc_id, entry["sealed"])
    except ServiceError as exc:
        report.problems.append(AuditProblem("payload", chain, doc_id, exc.message))
        return
    personal = opened.get("personal_info")
    if isinstance(personal, dict) and personal_digest(personal) != entry.get("personal_sha256"):
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
