"""No answered request without its audit entry, whatever happens to the serving process.

Each test runs the local gateway (gunicorn, as Cloud Functions runs a function) under a
bounded load of predictions with distinct request ids, then reads the trail the process
left in its SQLite store: every request answered 2xx must have its entry.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from common.audit.trail import ENTRIES
from common.audit.verify import verify_audit
from common.backends.sqlite_store import SQLiteDocumentStore
from common.core.config import Settings
from tests.support.gateway_process import Gateway, running_gateway, script_token

pytestmark = pytest.mark.gateway

AUDIT_KEY = "durability-audit-hmac-key-long-enough-0123456789abcdef"


def _load(
    gateway: Gateway, *, threads: int, seconds: float, during: Callable[[], None]
) -> dict[str, int]:
    """Predictions from ``threads`` clients for ``seconds``; ``during`` runs a third of the
    way in. The status each request id got; no entry for a request that got no answer."""
    token = script_token(gateway, "model:risk:predict,model:read")
    headers = {"Authorization": f"Bearer {token}"}
    detail = requests.get(f"{gateway.base}/v1/models/risk", headers=headers, timeout=10)
    example = detail.json()["production"]["example"]
    answered: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(n: int) -> None:
        session = requests.Session()
        i = 0
        while time.monotonic() < stop_at:
            request_id = f"load-{n}-{i}"
            i += 1
            try:
                response = session.post(
                    f"{gateway.base}/v1/predict/risk",
                    json={"instances": [example]},
                    headers={**headers, "X-Request-Id": request_id},
                    timeout=15,
                )
            except requests.RequestException:
                session = requests.Session()  # the process died under it: no answer
                continue
            with lock:
                answered[request_id] = response.status_code

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(seconds / 3)
    during()
    for worker in workers:
        worker.join(timeout=seconds + 60)
    return answered


def _trail(gateway: Gateway) -> tuple[set[str], Any]:
    settings = Settings.from_environ(gateway.environ)
    store = SQLiteDocumentStore(settings.resolved_sqlite_path, timeout_s=10)
    try:
        ids = {d.data["request_id"] for d in store.query(ENTRIES)}
        return ids, verify_audit(store, AUDIT_KEY.encode())
    finally:
        store.close()


def _environ(**extra: str) -> dict[str, str]:
    return {"IPO_SECRET_AUDIT_HMAC_KEY": AUDIT_KEY, "IPO_RATE_LIMIT_PER_MINUTE": "0", **extra}


def test_sigkill_under_load_leaves_no_answered_request_unaudited(tmp_path: Path) -> None:
    with running_gateway(tmp_path, extra_environ=_environ()) as gateway:
        (victim,) = gateway.worker_pids()

        def kill() -> None:
            os.kill(victim, signal.SIGKILL)  # gunicorn starts a new worker

        answered = _load(gateway, threads=4, seconds=6.0, during=kill)
        ok = {rid for rid, status in answered.items() if 200 <= status < 300}
        assert gateway.worker_pids() != [victim]
        audited, report = _trail(gateway)
    assert len(ok) > 20  # answered before and after the kill
    assert ok - audited == set()
    assert report.ok, report.problems


def _shutdown_line(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith("{") and '"shutdown"' in line:
            return dict(json.loads(line)["shutdown"])
    raise AssertionError(f"no shutdown line in:\n{output}")


def test_a_stalled_store_then_sigterm_answers_nothing_unaudited_and_says_how_many_were_refused(
    tmp_path: Path,
) -> None:
    with running_gateway(tmp_path, extra_environ=_environ(IPO_BACKEND_TIMEOUT_S="1")) as gateway:
        settings = Settings.from_environ(gateway.environ)
        stall = sqlite3.connect(settings.resolved_sqlite_path, isolation_level=None, timeout=10)

        def stall_then_stop() -> None:
            stall.execute("BEGIN IMMEDIATE")  # holds the write lock: every commit waits
            time.sleep(3.0)
            os.kill(gateway.pid, signal.SIGTERM)

        answered = _load(gateway, threads=4, seconds=6.0, during=stall_then_stop)
        deadline = time.monotonic() + 30
        while '"shutdown"' not in gateway.banner() and time.monotonic() < deadline:
            time.sleep(0.2)
        stall.execute("ROLLBACK")
        stall.close()
        account = _shutdown_line(gateway.banner())
        audited, report = _trail(gateway)
    ok = {rid for rid, status in answered.items() if 200 <= status < 300}
    refused = [rid for rid, status in answered.items() if status == 503]
    assert ok, "nothing was answered before the stall"
    assert refused, "nothing was refused while the store was stalled"
    assert ok - audited == set()
    assert account["audit_requests_refused"] == len(refused)
    assert report.ok, report.problems
