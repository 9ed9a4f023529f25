"""Attacks on the stored trail: a chain cut back with its head rewritten, the caller's
digest reversed by enumeration or kept after erasure, and what ``verify_audit`` answers."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from common.audit.macs import audit_keys, mac_of, personal_digest
from common.audit.retention import ErasureRequest, RetentionRequest, erase_subject, purge_retention
from common.audit.trail import CHAINS, ENTRIES, entry_id
from common.audit.verify import read_anchors, verify_audit
from common.monitoring.compliance.checks import RULES
from common.monitoring.compliance.context import ComplianceContext
from common.monitoring.compliance.scan import run_rule
from tests.audit.test_trail import KEY, entries, event, verify, written
from tests.conftest import ROOT
from tests.support.fixtures import Stack


def run_verify(stack: Stack, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.environ, "PATH": "/usr/bin:/bin", **environ}
    env = {k: v for k, v in env.items() if v != "<unset>"}
    return subprocess.run(
        [sys.executable, "scripts/verify_audit.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cut_back_with_the_head_rewritten(stack: Stack, chain: str, keep: int) -> None:
    """What someone who can write the store but lacks the key does: delete the newest
    entries and make the head agree with the last one left."""
    documents = stack.services.backends.documents
    stored = entries(stack)
    last_kept = entry_id(chain, keep)
    for doc_id in stored:
        if doc_id > last_kept:
            documents.delete(ENTRIES, doc_id)
    documents.update(
        CHAINS,
        chain,
        {"last_seq": keep, "last_mac": stored[last_kept]["mac"], "last_entry": last_kept},
    )


def test_a_chain_cut_back_with_its_head_rewritten_is_tampering_without_anchors(
    stack: Stack,
) -> None:
    audit = written(stack, 5)
    assert run_verify(stack).returncode == 0
    cut_back_with_the_head_rewritten(stack, audit.chain, keep=3)
    found = run_verify(stack)
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    assert report["entries"] == 3
    assert [(p["kind"], p["chain"], p["entry_id"]) for p in report["problems"]] == [
        ("altered", audit.chain, None)
    ]
    assert "head's MAC does not match" in report["problems"][0]["detail"]


def test_the_compliance_scan_fails_a_chain_cut_back_with_its_head_rewritten(
    stack: Stack,
) -> None:
    audit = written(stack, 4)
    rule = next(r for r in RULES if r.rule_id == "AUDIT_001")
    now = datetime.now(UTC)
    assert run_rule(rule, ComplianceContext(stack.services, now)).passed is True
    cut_back_with_the_head_rewritten(stack, audit.chain, keep=2)
    result = run_rule(rule, ComplianceContext(stack.services, now))
    assert result.passed is False
    [integrity] = [d for d in result.details if d["check"] == "chain_integrity"]
    assert integrity["passed"] is False
    assert [(p["kind"], p["chain"]) for p in integrity["problems"]] == [("altered", audit.chain)]


def test_a_head_without_its_mac_passes_only_where_an_anchor_shows_it(stack: Stack) -> None:
    audit = written(stack, 3)
    documents = stack.services.backends.documents
    head = documents.get(CHAINS, audit.chain)
    assert head is not None
    unkeyed = {k: v for k, v in head.data.items() if k != "mac"}
    documents.set(CHAINS, audit.chain, unkeyed)  # as heads were written before they had one
    assert [p.kind for p in verify(stack).problems] == ["unkeyed_head"]

    def anchor(seq: int, mac: str) -> dict[str, Any]:
        line = {"audit_anchor": {"chain": audit.chain, "last_seq": seq, "last_mac": mac}}
        return read_anchors([json.dumps(line)])

    vouching = anchor(3, unkeyed["last_mac"])
    assert verify_audit(documents, KEY, anchors=vouching).ok
    behind = anchor(2, entries(stack)[entry_id(audit.chain, 2)]["mac"])
    report = verify_audit(documents, KEY, anchors=behind)  # entry 3 is not vouched for
    assert [p.kind for p in report.problems] == ["unkeyed_head"]


def test_a_removed_head_is_tampering(stack: Stack) -> None:
    audit = written(stack, 2)
    stack.services.backends.documents.delete(CHAINS, audit.chain)
    found = run_verify(stack)
    assert found.returncode == 1
    assert [p["kind"] for p in json.loads(found.stdout)["problems"]] == ["forged"]


def test_the_callers_digest_is_keyed_so_enumerating_addresses_finds_nothing(
    stack: Stack,
) -> None:
    audit = stack.services.audit
    audit.append(event(1, client_ip="198.51.100.77", user_agent="curl/8.5.0"))
    audit.append(event(2, client_ip="198.51.100.77", user_agent="curl/8.5.0"))
    audit.append(event(3, client_ip="198.51.100.78", user_agent="curl/8.5.0"))
    one, two, three = (entries(stack)[entry_id(audit.chain, n)] for n in (1, 2, 3))
    assert one["personal_sha256"] == two["personal_sha256"]  # the same caller, matched
    assert one["personal_sha256"] != three["personal_sha256"]
    targets = {one["personal_sha256"], three["personal_sha256"]}
    found = []
    for address in ipaddress.ip_network("198.51.100.0/24"):
        ip = str(address)
        personal = {"client_ip": ip, "forwarded_for": "", "user_agent": "curl/8.5.0"}
        for candidate in (
            (ip + "curl/8.5.0").encode(),
            ip.encode(),
            orjson.dumps(personal, option=orjson.OPT_SORT_KEYS),
        ):
            if hashlib.sha256(candidate).hexdigest() in targets:
                found.append(ip)
    assert found == []
    keys = audit_keys(KEY)
    personal = {"client_ip": "198.51.100.77", "forwarded_for": "", "user_agent": "curl/8.5.0"}
    assert personal_digest(keys.personal, personal) == one["personal_sha256"]
    assert len({keys.entry, keys.head, keys.personal}) == 3  # one key per purpose


def test_erasure_drops_the_digest_and_the_chain_still_verifies(stack: Stack) -> None:
    audit = stack.services.audit
    for n in range(3):
        audit.append(event(n, principal="analyst-7"))
    audit.append(event(9, principal="analyst-8"))
    result = erase_subject(stack.services, ErasureRequest(subject="analyst-7"))
    assert result["audit_entries_redacted"] == 3
    stored = list(entries(stack).values())
    erased = [e for e in stored if e["principal"] == "analyst-7"]
    assert len(erased) == 3
    assert all("personal_sha256" not in e and "sealed" not in e for e in erased)
    assert all(
        not any(k.startswith("personal_") and k != "personal_commit" for k in e) for e in erased
    )
    [kept] = [e for e in stored if e["principal"] == "analyst-8"]
    assert "personal_sha256" in kept
    report = verify(stack)
    assert report.ok, report.problems
    purge_retention(stack.services, RetentionRequest(), now=datetime(2100, 1, 1, tzinfo=UTC))
    assert all("personal_sha256" not in e for e in entries(stack).values())
    assert verify(stack).ok


def test_a_rewritten_digest_is_reported(stack: Stack) -> None:
    audit = written(stack, 2)
    victim = entry_id(audit.chain, 2)
    documents = stack.services.backends.documents
    documents.set(ENTRIES, victim, {**entries(stack)[victim], "personal_sha256": "0" * 64})
    assert [(p.kind, p.entry_id) for p in verify_audit(documents, KEY).problems] == [
        ("altered", victim)
    ]


def test_an_entry_written_before_the_keyed_digest_still_verifies_and_keeps_it(
    stack: Stack,
) -> None:
    """Its plain digest is under its MAC: erasure drops the sealed part and leaves it."""
    documents = stack.services.backends.documents
    personal = {"client_ip": "203.0.113.9", "forwarded_for": "", "user_agent": "pytest"}
    old: dict[str, Any] = {
        **{k: v for k, v in vars(event(1)).items() if k not in personal},
        "personal_sha256": hashlib.sha256(
            orjson.dumps(personal, option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
        "chain": "old",
        "seq": 1,
        "prev_mac": "",
    }
    for name in ("financial_data", "proprietary_metrics"):
        old.pop(name)
    old["mac"] = mac_of(KEY, old)
    documents.set(ENTRIES, entry_id("old", 1), {**old, "holds_personal": True})
    documents.set(
        CHAINS, "old", {"chain": "old", "last_seq": 1, "last_mac": old["mac"], "last_entry": "x"}
    )
    line = {"audit_anchor": {"chain": "old", "last_seq": 1, "last_mac": old["mac"]}}
    anchors = read_anchors([json.dumps(line)])
    assert verify_audit(documents, KEY, anchors=anchors).ok
    erase_subject(stack.services, ErasureRequest(subject="analyst-7"))
    after = entries(stack)[entry_id("old", 1)]
    assert after["holds_personal"] is False
    assert after["personal_sha256"] == old["personal_sha256"]
    assert verify_audit(documents, KEY, anchors=anchors).ok


def test_verify_audit_exit_status_is_0_clean_1_tampered_2_not_checked(stack: Stack) -> None:
    audit = written(stack, 3)
    clean = run_verify(stack)
    assert (clean.returncode, json.loads(clean.stdout)["ok"]) == (0, True)
    no_key = run_verify(stack, IPO_SECRET_AUDIT_HMAC_KEY="<unset>")
    assert no_key.returncode == 2
    assert "cannot read the audit key" in no_key.stderr
    assert "IPO_SECRET_AUDIT_HMAC_KEY" in no_key.stderr
    assert no_key.stdout == ""
    short_key = run_verify(stack, IPO_SECRET_AUDIT_HMAC_KEY="short")
    assert (short_key.returncode, short_key.stdout) == (2, "")
    unreadable = run_verify(stack, IPO_ENV_FILE=str(ROOT), IPO_SECRET_AUDIT_HMAC_KEY="<unset>")
    assert unreadable.returncode == 2
    assert "cannot read secrets file" in unreadable.stderr
    bad_settings = run_verify(stack, IPO_SECRET_SOURCE="vault")
    assert bad_settings.returncode == 2
    assert "IPO_SECRET_SOURCE" in bad_settings.stderr
    assert "the trail was not checked" in bad_settings.stderr
    stack.services.backends.documents.delete(ENTRIES, entry_id(audit.chain, 2))
    tampered = run_verify(stack)
    assert tampered.returncode == 1
    assert json.loads(tampered.stdout)["problems"][0]["kind"] == "missing"


def test_non_ascii_macs_are_reported_not_a_crash(stack: Stack) -> None:
    """A verifier that raised would read as "could not check" (exit 2), not tampering."""
    audit = written(stack, 2)
    documents = stack.services.backends.documents
    documents.update(CHAINS, audit.chain, {"mac": "é" * 64})
    victim = entry_id(audit.chain, 1)
    documents.set(ENTRIES, victim, {**entries(stack)[victim], "mac": "ü" * 64})
    found = run_verify(stack)
    assert found.returncode == 1, found.stderr
    problems = json.loads(found.stdout)["problems"]
    assert [(p["kind"], p["entry_id"]) for p in problems] == [
        ("altered", None),
        ("altered", victim),
        ("missing", entry_id(audit.chain, 2)),  # it no longer follows the altered entry
    ]
