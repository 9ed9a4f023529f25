"""The audit trail: entries stored before the answer by group commit, chained, sealed,
verifiable."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from common.audit.payload_log import PREDICTION_LOG, KeptPrediction
from common.audit.trail import CHAINS, ENTRIES, AuditEvent, AuditLog, entry_id, sha256_hex
from common.audit.verify import verify_audit
from common.backends.base import SET_MANY_MAX, Filter, KeyWrapper
from common.backends.local_keys import LocalKeyWrapper
from common.core.errors import UnavailableError
from common.security.crypto import EnvelopeCipher
from tests.support.fixtures import AUDIT_KEY, Stack

KEY = AUDIT_KEY.encode()
SECRET_REQUEST = '{"instances":[{"company":"Select Medical","revenue_musd":812.5}]}'


def event(n: int, **overrides: Any) -> AuditEvent:
    base = AuditEvent(
        operation="predictRisk",
        function="predict_risk",
        method="POST",
        path="/v1/predict/risk",
        principal="analyst-7",
        model_id="risk",
        model_version="1.0.0",
        request_id=f"req-{n}",
        request_sha256=sha256_hex(SECRET_REQUEST.encode()),
        response_sha256=sha256_hex(b'{"predictions":[0.25]}'),
        status=200,
        outcome="ok",
        client_ip="203.0.113.9",
        user_agent="pytest",
        time="2026-11-27T00:00:00.000000Z",
        financial_data=SECRET_REQUEST,
        proprietary_metrics='{"predictions":[0.25]}',
    )
    return replace(base, **overrides)


def written(stack: Stack, events: int) -> AuditLog:
    audit = stack.services.audit
    for n in range(events):
        audit.append(event(n))
    return audit


def entries(stack: Stack) -> dict[str, dict[str, Any]]:
    return {d.id: d.data for d in stack.services.backends.documents.query(ENTRIES)}


def verify(stack: Stack) -> Any:
    return verify_audit(stack.services.backends.documents, KEY, cipher=stack.services.cipher)


def test_entries_are_chained_sealed_and_verify(any_stack: Stack) -> None:
    audit = written(any_stack, 30)
    stored = entries(any_stack)
    assert len(stored) == 30
    first = stored[entry_id(audit.chain, 1)]
    assert first["principal"] == "analyst-7"
    assert first["outcome"] == "ok"
    assert first["prev_mac"] == ""
    assert stored[entry_id(audit.chain, 2)]["prev_mac"] == first["mac"]
    head = any_stack.services.backends.documents.get(CHAINS, audit.chain)
    assert head is not None
    assert head.data["last_seq"] == 30
    report = verify(any_stack)
    assert report.ok, report.problems
    assert (report.chains, report.entries) == (1, 30)


def test_no_plaintext_sensitive_field_is_stored(any_stack: Stack) -> None:
    written(any_stack, 3)
    dump = json.dumps(entries(any_stack))
    assert "Select Medical" not in dump
    assert "812.5" not in dump
    assert "203.0.113.9" not in dump  # the caller's address is personal data: sealed too
    assert "financial_data" not in {k for e in entries(any_stack).values() for k in e}
    one = next(iter(entries(any_stack).items()))
    opened = any_stack.services.cipher.open(one[0], one[1]["sealed"])
    assert opened["financial_data"] == SECRET_REQUEST


def test_an_altered_entry_is_reported(stack: Stack) -> None:
    audit = written(stack, 5)
    victim = entry_id(audit.chain, 3)
    doc = entries(stack)[victim]
    stack.services.backends.documents.set(ENTRIES, victim, {**doc, "principal": "someone-else"})
    report = verify(stack)
    assert [(p.kind, p.entry_id) for p in report.problems] == [("altered", victim)]


def test_an_entry_removed_from_the_middle_is_reported(stack: Stack) -> None:
    audit = written(stack, 5)
    stack.services.backends.documents.delete(ENTRIES, entry_id(audit.chain, 2))
    report = verify(stack)
    assert [p.kind for p in report.problems] == ["missing"]
    assert report.problems[0].entry_id == entry_id(audit.chain, 2)


def test_entries_cut_from_the_end_are_reported(stack: Stack) -> None:
    audit = written(stack, 5)
    for seq in (4, 5):
        stack.services.backends.documents.delete(ENTRIES, entry_id(audit.chain, seq))
    report = verify(stack)
    assert [p.kind for p in report.problems] == ["truncated"]
    assert "4..5" in report.problems[0].detail


def test_a_forged_entry_is_reported(stack: Stack) -> None:
    audit = written(stack, 3)
    documents = stack.services.backends.documents
    genuine = entries(stack)[entry_id(audit.chain, 3)]
    # Rewrite the last entry as someone without the key would: plausible fields, a MAC
    # made up, the head updated to match.
    forged = {**genuine, "principal": "intruder", "mac": "0" * 64}
    documents.set(ENTRIES, entry_id(audit.chain, 3), forged)
    documents.update(CHAINS, audit.chain, {"last_mac": "0" * 64})
    report = verify(stack)
    assert ("altered", entry_id(audit.chain, 3)) in [(p.kind, p.entry_id) for p in report.problems]
    documents.set(ENTRIES, "intruder-chain.000000000001", {**genuine, "chain": "intruder-chain"})
    assert "forged" in [p.kind for p in verify(stack).problems]


def test_a_swapped_sealed_payload_is_reported(stack: Stack) -> None:
    audit = written(stack, 2)
    documents = stack.services.backends.documents
    one, two = entry_id(audit.chain, 1), entry_id(audit.chain, 2)
    stored = entries(stack)
    documents.set(ENTRIES, two, {**stored[two], "sealed": stored[one]["sealed"]})
    assert [(p.kind, p.entry_id) for p in verify(stack).problems] == [("payload", two)]


class _DownThenUp(KeyWrapper):
    """A key service that is unreachable until ``up`` is set."""

    def __init__(self, inner: KeyWrapper) -> None:
        self.inner = inner
        self.up = threading.Event()
        self.key_id = "flaky"

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        if not self.up.is_set():
            raise UnavailableError("key service down")
        return self.inner.wrap(data_key, context=context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        return self.inner.unwrap(wrapped, context=context)


def audit_log(stack: Stack, **kw: Any) -> AuditLog:
    kw.setdefault("cipher", stack.services.cipher)
    return AuditLog(
        kw.pop("documents", stack.services.backends.documents),
        stack.services.backends.secrets,
        secret_name=stack.settings.audit_secret_name,
        **kw,
    )


def test_key_service_down_refuses_the_request_and_never_stores_plaintext(
    stack: Stack, tmp_path: Path
) -> None:
    wrapper = _DownThenUp(LocalKeyWrapper(tmp_path / "k.key"))
    audit = audit_log(stack, cipher=EnvelopeCipher(wrapper), commit_timeout_s=0.3)
    with pytest.raises(UnavailableError, match="audit trail could not record") as refused:
        audit.append(event(1))
    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"]
    assert entries(stack) == {}
    assert (audit.refused, audit.committed) == (1, 0)
    assert audit.commit_failures >= 1
    wrapper.up.set()
    audit.append(event(2))  # returns once stored
    assert len(entries(stack)) == 1
    assert "Select Medical" not in json.dumps(entries(stack))
    documents = stack.services.backends.documents
    assert verify_audit(documents, KEY, cipher=EnvelopeCipher(wrapper)).ok


class _Counting:
    """A document store that counts the audit's batched writes and makes each take a
    while, as a remote store's round trip does."""

    def __init__(self, inner: Any, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.commits = 0
        self.down = False
        self._first: tuple[threading.Event, threading.Event] | None = None

    def hold_first_commit(self) -> tuple[threading.Event, threading.Event]:
        """Make the first write wait: (set once it is waiting, set to let it go on)."""
        self._first = (threading.Event(), threading.Event())
        return self._first

    def set_many(self, documents: Any) -> None:
        if self._first is not None and self.commits == 0:
            inside, release = self._first
            inside.set()
            release.wait(30)
        self.commits += 1
        time.sleep(self.delay_s)
        if self.down:
            raise UnavailableError("the store is down")
        self.inner.set_many(documents)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_concurrent_requests_share_commits_and_each_returns_once_stored(
    stack: Stack,
) -> None:
    documents = stack.services.backends.documents
    store = _Counting(documents, delay_s=0.02)
    audit = audit_log(stack, documents=store)
    missing: list[int] = []

    def one(n: int) -> None:
        audit.append(event(n))
        if not documents.query(ENTRIES, [Filter("request_id", "==", f"req-{n}")]):
            missing.append(n)  # answered before its entry was stored

    threads = [threading.Thread(target=one, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert missing == []
    assert len(entries(stack)) == 40
    assert store.commits < 20  # grouped: one round trip serves several requests
    report = verify(stack)
    assert report.ok, report.problems
    assert report.chains == 1


def test_requests_arriving_during_a_commit_are_stored_together_by_one_successor(
    stack: Stack,
) -> None:
    documents = stack.services.backends.documents
    store = _Counting(documents)
    audit = audit_log(stack, documents=store)
    inside, release = store.hold_first_commit()
    returned: list[int] = []

    def one(n: int) -> None:
        audit.append(event(n))
        returned.append(n)

    leader = threading.Thread(target=one, args=(0,))
    leader.start()
    assert inside.wait(10)
    followers = [threading.Thread(target=one, args=(n,)) for n in range(1, 6)]
    for thread in followers:
        thread.start()
    deadline = time.monotonic() + 10
    while len(audit._waiting) < 5 and time.monotonic() < deadline:  # all queued behind it
        time.sleep(0.005)
    assert returned == []  # nobody is answered before its entry is stored
    release.set()
    for thread in [leader, *followers]:
        thread.join(10)
    assert sorted(returned) == list(range(6))
    assert store.commits == 2  # the five waiting were written in one batch
    assert len(entries(stack)) == 6
    assert verify(stack).ok


def test_the_next_batch_does_not_wait_for_an_anchor_line(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.audit import trail

    store = _Counting(stack.services.backends.documents)
    inside, release = store.hold_first_commit()
    audit = audit_log(stack, documents=store)
    written = trail._anchor_line
    anchoring, let_go = threading.Event(), threading.Event()
    calls: list[int] = []

    def first_line_stalls(chain: str, pending: Any) -> None:
        calls.append(len(pending))
        if len(calls) == 1:  # a slow log sink, once
            anchoring.set()
            let_go.wait(10)
        written(chain, pending)

    monkeypatch.setattr(trail, "_anchor_line", first_line_stalls)
    returned: list[int] = []

    def one(n: int) -> None:
        audit.append(event(n))
        returned.append(n)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(3)]
    threads[0].start()
    assert inside.wait(10)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while len(audit._waiting) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    assert anchoring.wait(10)
    while len(returned) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sorted(returned) == [1, 2]  # stored and answered while the first line is written
    let_go.set()
    for thread in threads:
        thread.join(10)
    assert sorted(returned) == [0, 1, 2]
    assert calls == [1, 2]  # still one anchor per batch
    assert verify(stack).ok


def test_the_largest_batch_with_every_prediction_kept_is_one_write(stack: Stack) -> None:
    """249 entries, each with a kept prediction, and the chain's head: 499 documents, as
    many as one Firestore commit takes (``SET_MANY_MAX``)."""
    documents = stack.services.backends.documents
    store = _Counting(documents)
    fits = (SET_MANY_MAX - 1) // 2
    audit = audit_log(stack, documents=store, batch_max=fits, commit_timeout_s=30.0)
    inside, release = store.hold_first_commit()
    kept = KeptPrediction(
        {"model_id": "risk"},
        {
            "financial_data": {"instances": [{"x": 1}]},
            "proprietary_metrics": {"predictions": [0.25]},
        },
    )
    threads = [
        threading.Thread(target=audit.append, args=(event(n, kept=kept),)) for n in range(fits + 1)
    ]
    threads[0].start()
    assert inside.wait(10)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 20
    while len(audit._waiting) < fits and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for thread in threads:
        thread.join(30)
    assert store.commits == 2
    assert len(entries(stack)) == fits + 1
    stored = documents.query(PREDICTION_LOG)
    assert len(stored) == fits + 1
    assert all("ciphertext" in record.data["financial_data"] for record in stored)
    assert verify(stack).ok
    with pytest.raises(ValueError, match=f"1 to {fits}"):
        audit_log(stack, batch_max=fits + 1)


def test_a_store_that_stays_down_refuses_within_the_timeout_and_keeps_nothing(
    stack: Stack,
) -> None:
    store = _Counting(stack.services.backends.documents)
    audit = audit_log(stack, documents=store, commit_timeout_s=0.3)
    audit.append(event(1))
    first_chain = audit.chain
    store.down = True
    refused: list[int] = []

    def one(n: int) -> None:
        try:
            audit.append(event(n))
        except UnavailableError:
            refused.append(n)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(2, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(refused) == list(range(2, 8))
    assert audit.refused == 6
    store.down = False
    audit.append(event(9))
    stored = {e["request_id"] for e in entries(stack).values()}
    assert stored == {"req-1", "req-9"}
    # a commit reported failed may still have landed: the next entries start a new chain
    assert audit.chain != first_chain
    assert verify(stack).ok


def test_each_committed_batch_logs_its_anchor(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    audit = stack.services.audit
    with caplog.at_level("INFO", logger="ipo.audit.anchor"):
        audit.append(event(1))
        audit.append(event(2))
    anchors = [r.audit_anchor for r in caplog.records if r.name == "ipo.audit.anchor"]
    head = stack.services.backends.documents.get(CHAINS, audit.chain)
    assert head is not None
    assert anchors[-1] == {
        "chain": audit.chain,
        "last_seq": 2,
        "last_mac": head.data["last_mac"],
        "last_entry": entry_id(audit.chain, 2),
        "entries": 1,
    }


def test_entries_without_a_payload_seal_only_the_callers_personal_data(stack: Stack) -> None:
    audit = stack.services.audit
    audit.append(event(1, financial_data=None, proprietary_metrics=None, status=401))
    ((doc_id, stored),) = entries(stack).items()
    assert stored["sealed"]["envelope"]["fields"] == ["personal_info"]
    opened = stack.services.cipher.open(doc_id, stored["sealed"])
    assert opened["personal_info"]["client_ip"] == "203.0.113.9"
    assert verify(stack).ok


def test_dropping_the_sealed_part_keeps_the_chain_verifiable(stack: Stack) -> None:
    audit = written(stack, 3)
    documents = stack.services.backends.documents
    victim = entry_id(audit.chain, 2)
    doc = entries(stack)[victim]
    erased = {k: v for k, v in doc.items() if k != "sealed"}
    documents.set(ENTRIES, victim, {**erased, "holds_personal": False})
    assert verify(stack).ok


def test_verify_script_reports_tampering_with_exit_status(stack: Stack) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    audit = written(stack, 3)
    environ = {**stack.environ, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "scripts/verify_audit.py"]
    clean = subprocess.run(run, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["entries"] == 3
    stack.services.backends.documents.delete(ENTRIES, entry_id(audit.chain, 2))
    broken = subprocess.run(run, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["problems"][0]["kind"] == "missing"


def test_an_exported_anchor_shows_entries_cut_from_the_end_and_an_earlier_head_restored(
    stack: Stack, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from common.core.logs import JsonFormatter
    from tests.conftest import ROOT

    audit = stack.services.audit
    documents = stack.services.backends.documents
    earlier: dict[str, Any] = {}
    with caplog.at_level("INFO", logger="ipo.audit.anchor"):
        for n in range(5):
            audit.append(event(n))
            if n == 2:  # a genuine head, MAC and all, copied by someone who can read
                head = documents.get(CHAINS, audit.chain)
                assert head is not None
                earlier = dict(head.data)
    printed = [JsonFormatter().format(r) for r in caplog.records if r.name == "ipo.audit.anchor"]
    # the sink's files hold Cloud Logging entries; a function's own log holds its lines
    exported = tmp_path / "anchors.json"
    exported.write_text(
        "\n".join(json.dumps({"jsonPayload": json.loads(line)}) for line in printed[:3])
        + "\n"
        + "\n".join(printed[3:])
        + "\n"
    )
    for seq in (4, 5):
        documents.delete(ENTRIES, entry_id(audit.chain, seq))
    documents.set(CHAINS, audit.chain, earlier)
    assert verify(stack).ok  # an earlier genuine head put back: the store alone cannot tell
    environ = {**stack.environ, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "scripts/verify_audit.py", "--anchors", str(exported)]
    found = subprocess.run(run, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    assert report["anchors"] == 1
    assert report["unanchored_chains"] == []
    assert [(p["kind"], p["entry_id"]) for p in report["problems"]] == [
        ("truncated", entry_id(audit.chain, 4))
    ]
    assert "4..5" in report["problems"][0]["detail"]


def test_anchors_show_a_deleted_chain_and_a_replaced_entry(stack: Stack) -> None:
    from common.audit.verify import read_anchors

    audit = stack.services.audit
    audit.append(event(1))
    documents = stack.services.backends.documents
    head = documents.get(CHAINS, audit.chain)
    assert head is not None
    line = json.dumps(
        {"audit_anchor": {"chain": audit.chain, "last_seq": 1, "last_mac": head.data["last_mac"]}}
    )
    anchors = read_anchors(["not an anchor", line])
    other = read_anchors(
        [json.dumps({"audit_anchor": {"chain": "gone", "last_seq": 2, "last_mac": "a" * 64}})]
    )
    report = verify_audit(documents, KEY, anchors={**anchors, **other})
    assert [(p.kind, p.chain) for p in report.problems] == [("missing", "gone")]
    replaced = {**anchors[audit.chain].__dict__, "last_mac": "b" * 64}
    report = verify_audit(
        documents, KEY, anchors=read_anchors([json.dumps({"audit_anchor": replaced})])
    )
    assert [p.kind for p in report.problems] == ["altered"]
    with pytest.raises(ValueError, match="line 1"):
        read_anchors([json.dumps({"audit_anchor": {"chain": "c", "last_seq": "7"}})])


def test_a_thousand_audited_requests_cost_one_kms_call(stack: Stack, tmp_path: Path) -> None:
    from dataclasses import replace as replaced

    from common.backends.kms_keys import KmsKeyWrapper
    from common.services import use_services
    from tests.backends.test_key_wrappers import FakeKms, kms_settings
    from tests.conftest import function_client

    kms = FakeKms()
    cipher = EnvelopeCipher(KmsKeyWrapper(kms_settings(tmp_path), client=kms))
    services = replaced(stack.services, cipher=cipher, audit=audit_log(stack, cipher=cipher))
    use_services(services, close_previous=False)
    client = function_client("list_models")
    for _ in range(1000):
        response = client.get("/v1/models", headers=stack.headers())
        assert response.status_code == 200
    assert len(entries(stack)) == 1000
    assert kms.calls("encrypt") <= 1  # one data key wrapped for all of them
    report = verify_audit(
        stack.services.backends.documents,
        KEY,
        cipher=EnvelopeCipher(KmsKeyWrapper(kms_settings(tmp_path), client=kms)),
    )
    assert report.ok, report.problems
    assert kms.calls("decrypt") <= 1  # a fresh reader unwraps that one key once


def test_an_anchors_file_without_anchors_is_refused_not_passed(
    stack: Stack, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    stack.services.audit.append(event(1))
    wrong = tmp_path / "README.md"
    wrong.write_text("# not an export\n")
    environ = {**stack.environ, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "scripts/verify_audit.py", "--anchors", str(wrong)]
    found = subprocess.run(run, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert found.returncode == 2
    assert "without a single audit anchor line" in found.stderr


def test_chains_no_anchor_names_are_listed(stack: Stack) -> None:
    from common.audit.verify import read_anchors

    audit = stack.services.audit
    audit.append(event(1))
    other = read_anchors(
        [json.dumps({"audit_anchor": {"chain": "gone", "last_seq": 1, "last_mac": "a" * 64}})]
    )
    report = verify_audit(stack.services.backends.documents, KEY, anchors=other)
    assert report.unanchored == [audit.chain]


def test_an_entry_that_cannot_be_formed_refuses_its_request_and_the_next_one_is_stored(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = audit_log(stack, commit_timeout_s=0.5)
    real = AuditLog._chain

    def broken(self: AuditLog, batch: list[AuditEvent]) -> Any:
        raise TypeError("not serialisable")

    monkeypatch.setattr(AuditLog, "_chain", broken)
    with pytest.raises(UnavailableError, match="TypeError"):
        audit.append(event(1))
    monkeypatch.setattr(AuditLog, "_chain", real)
    audit.append(event(2))
    assert {e["request_id"] for e in entries(stack).values()} == {"req-2"}
    assert verify(stack).ok
