"""Retention and erasure: personal data goes, the audit chain still verifies, twice is once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from common.audit.macs import HOLDS_PERSONAL
from common.audit.retention import ErasureRequest, RetentionRequest, erase_subject, purge_retention
from common.audit.trail import ENTRIES
from common.audit.verify import verify_audit
from common.experiments.core import ASSIGNMENTS
from common.security.crypto import ENVELOPE, EnvelopeCipher
from common.services import reset_services, use_services
from tests.audit.test_trail import event
from tests.conftest import function_client
from tests.support.fixtures import AUDIT_KEY, Stack, embedded_stack
from tests.support.services import RedisServer


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def state(stack: Stack) -> dict[str, Any]:
    documents = stack.services.backends.documents
    return {
        "entries": {d.id: d.data for d in documents.query(ENTRIES)},
        "assignments": {d.id: d.data for d in documents.query(ASSIGNMENTS)},
    }


def seed(stack: Stack, now: datetime) -> None:
    old = now - timedelta(days=stack.settings.retention_days + 1)
    audit = stack.services.audit
    audit.append(event(1, time=rfc3339(old), principal="analyst-7"))
    audit.append(event(2, time=rfc3339(now), principal="analyst-7"))
    audit.append(event(3, time=rfc3339(now), principal="analyst-8"))
    documents = stack.services.backends.documents
    for doc_id, subject, at in (
        ("e:old", "user-1", old),
        ("e:new", "user-1", now),
        ("e:x", "user-2", now),
    ):
        documents.create(
            ASSIGNMENTS, doc_id, {"experiment_id": "e", "subject": subject, "at": rfc3339(at)}
        )


def test_purge_drops_old_personal_data_and_is_idempotent(stack: Stack) -> None:
    now = datetime.now(UTC)
    seed(stack, now)
    first = purge_retention(stack.services, RetentionRequest(), now=now)
    assert (first["audit_entries_redacted"], first["assignments_deleted"]) == (1, 1)
    after = state(stack)
    old = next(e for e in after["entries"].values() if e["request_id"] == "req-1")
    assert "sealed" not in old
    assert old[HOLDS_PERSONAL] is False
    assert old["principal"] == "analyst-7"  # who did what stays; the personal data goes
    assert all("sealed" in e for e in after["entries"].values() if e["request_id"] != "req-1")
    assert sorted(after["assignments"]) == ["e:new", "e:x"]
    report = verify_audit(
        stack.services.backends.documents, AUDIT_KEY.encode(), cipher=stack.services.cipher
    )
    assert report.ok, report.problems
    second = purge_retention(stack.services, RetentionRequest(), now=now)
    assert (second["audit_entries_redacted"], second["assignments_deleted"]) == (0, 0)
    assert state(stack) == after


def erase(stack: Stack, subject: str) -> dict[str, Any]:
    response = function_client("purge_retention").post(
        "/v1/privacy/erasure", json={"subject": subject}, headers=stack.headers(subject="dpo")
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    return result


def test_erasure_removes_a_subjects_data_and_is_audited(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    stack = embedded_stack(
        tmp_path, IPO_REDIS_URL=redis_server.url, IPO_RATE_LIMIT_PER_MINUTE="100"
    )
    use_services(stack.services)
    try:
        now = datetime.now(UTC)
        seed(stack, now)
        function_client("list_models").get("/v1/models", headers=stack.headers(subject="analyst-7"))
        bucket_keys = redis.Redis.from_url(redis_server.url).keys("ipo:ratelimit:analyst-7")
        assert bucket_keys
        first = erase(stack, "analyst-7")
        assert first["audit_entries_redacted"] == 3  # two seeded, one from the request above
        assert first["rate_limit_buckets_deleted"] >= 1
        assert not redis.Redis.from_url(redis_server.url).keys("ipo:ratelimit:analyst-7")
        user = erase(stack, "user-1")
        assert user["assignments_deleted"] == 2
        again = erase(stack, "user-1")
        assert (again["assignments_deleted"], again["audit_entries_redacted"]) == (0, 0)
        entries = state(stack)["entries"].values()
        erasures = [e for e in entries if e["operation"] == "eraseSubject"]
        assert len(erasures) == 3
        assert all(e["principal"] == "dpo" and e["status"] == 200 for e in erasures)
        report = verify_audit(
            stack.services.backends.documents, AUDIT_KEY.encode(), cipher=stack.services.cipher
        )
        assert report.ok, report.problems
    finally:
        reset_services()


def test_the_retention_job_runs_as_a_function(stack: Stack) -> None:
    response = function_client("purge_retention").post(
        "/v1/jobs/purge-retention", json={}, headers=stack.headers()
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "done"


def test_the_retention_job_needs_no_body_but_erasure_does(stack: Stack) -> None:
    """Every field of the job's body has a default, so no body means them all (the
    scheduler sends one; a person with curl often does not). Erasure names its subject."""
    client = function_client("purge_retention")
    for data in (None, b"", b" \n"):
        response = client.post("/v1/jobs/purge-retention", data=data, headers=stack.headers())
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["status"] == "done"
    refused = client.post("/v1/privacy/erasure", headers=stack.headers(subject="dpo"))
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "malformed_request"
    assert "request body is empty" in refused.get_json()["error"]["message"]


def test_erasing_one_record_of_a_shared_data_key_leaves_the_others_readable(
    stack: Stack,
) -> None:
    """Data keys serve many records; erasure still works per record, because it removes
    the record's ciphertext, which the data key alone cannot bring back."""
    seed(stack, datetime.now(UTC))
    before = state(stack)["entries"]
    sealed = {doc_id: e["sealed"] for doc_id, e in before.items()}
    assert len({s[ENVELOPE]["data_key_id"] for s in sealed.values()}) == 1  # one shared key
    (erased,) = [doc_id for doc_id, e in before.items() if e["principal"] == "analyst-8"]

    result = erase_subject(stack.services, ErasureRequest(subject="analyst-8"))
    assert result["audit_entries_redacted"] == 1

    after = state(stack)["entries"]
    assert "sealed" not in after[erased]
    assert after[erased][HOLDS_PERSONAL] is False
    stored = json.dumps(state(stack))
    for field in ("financial_data", "personal_info", "proprietary_metrics"):
        assert sealed[erased][field]["ciphertext"] not in stored
    reader = EnvelopeCipher(stack.services.backends.keys)  # another instance: no cached key
    for doc_id, entry in after.items():
        if doc_id != erased:
            assert entry["sealed"] == sealed[doc_id]
            opened = reader.open(doc_id, entry["sealed"])
            assert opened["personal_info"]["client_ip"] == "203.0.113.9"
