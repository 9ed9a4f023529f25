"""What an audit commit costs a request: ``AuditLog.append`` from one thread, so every
append is one batch and one write, with the batch written as one ``set_many`` (what the
trail does) and as a transaction of sets (what it did before), alternated in rounds.

On the embedded store the two differ by a little Python; on Firestore by a round trip:
a transaction is begun (one RPC) before it is committed (another), a batched write is
only committed. The emulator answers on the same machine, so its times show the work
and the round trips counted here carry to the cloud, where each costs the network's
round trip to the database's region as well. ``--firestore HOST:PORT`` names a running
emulator (``gcloud emulators firestore start --host-port=127.0.0.1:8790``); each run
uses a project id of its own there.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import bench_http as h

from common.audit.trail import AuditEvent, AuditLog, sha256_hex
from common.backends import build_backends
from common.backends.base import DocumentStore, Transaction
from common.core.config import Settings
from common.security.crypto import EnvelopeCipher
from tools.local import ensure_local_secrets

WRITES = ("set_many", "transaction")
ROUND_TRIPS = ("begin_transaction", "commit", "rollback", "batch_get_documents")
REQUEST = (
    b'{"instances":[{"company":"Select Medical","revenue_musd":812.5,"ebitda_margin":0.12,'
    b'"debt_to_equity":1.4,"sector":"healthcare","years_profitable":6}]}'
)


class _TransactionOfSets:
    """The store with ``set_many`` done as the trail did before: a transaction of sets."""

    def __init__(self, inner: DocumentStore) -> None:
        self._inner = inner

    def set_many(self, documents: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        def write(tx: Transaction) -> None:
            for collection, doc_id, data in documents:
                tx.set(collection, doc_id, data)

        self._inner.transaction(write, max_attempts=3)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _RoundTrips:
    """Counts the Firestore client's calls to the server, by method."""

    def __init__(self, store: DocumentStore) -> None:
        self.counts = dict.fromkeys(ROUND_TRIPS, 0)
        self._lock = threading.Lock()
        api = store._get_client()._firestore_api  # type: ignore[attr-defined]
        for name in ROUND_TRIPS:
            setattr(api, name, self._counted(name, getattr(api, name)))

    def _counted(self, name: str, call: Any) -> Any:
        def counted(*args: Any, **kw: Any) -> Any:
            with self._lock:
                self.counts[name] += 1
            return call(*args, **kw)

        return counted

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


def _event(n: int) -> AuditEvent:
    answer = b'{"predictions":[[0.81,0.19]],"model_version":"1.0.0"}'
    return AuditEvent(
        operation="predictRisk",
        function="predict_risk",
        method="POST",
        path="/v1/predict/risk",
        principal="bench",
        model_id="risk",
        model_version="1.0.0",
        request_id=f"bench-{n}",
        request_sha256=sha256_hex(REQUEST),
        response_sha256=sha256_hex(answer),
        status=200,
        outcome="ok",
        client_ip="127.0.0.1",
        user_agent="bench",
        time="2026-01-01T00:00:00.000000Z",
        financial_data=REQUEST.decode(),
        proprietary_metrics=answer.decode(),
    )


def _settings(folder: Path, firestore: str | None) -> Settings:
    environ = h.environment(folder)
    if firestore:
        environ["IPO_DOCUMENT_STORE"] = "firestore"
        environ["IPO_GCP_PROJECT"] = f"bench-audit-{uuid.uuid4().hex[:8]}"
        environ["IPO_FIRESTORE_EMULATOR_HOST"] = firestore
    ensure_local_secrets(Settings.from_environ(environ))
    return Settings.from_environ(environ)


def measure_store(
    settings: Settings, *, appends: int, rounds: int, counted: bool
) -> list[dict[str, Any]]:
    """Per write path: every append's time in ms over all rounds, and round trips."""
    backends = build_backends(settings)
    documents = backends.documents
    trips = _RoundTrips(documents) if counted else None
    cipher = EnvelopeCipher(backends.keys)
    logs = {
        "set_many": AuditLog(
            documents, backends.secrets, secret_name=settings.audit_secret_name, cipher=cipher
        ),
        "transaction": AuditLog(
            cast(DocumentStore, _TransactionOfSets(documents)),
            backends.secrets,
            secret_name=settings.audit_secret_name,
            cipher=cipher,
        ),
    }
    times: dict[str, list[float]] = {write: [] for write in WRITES}
    calls = dict.fromkeys(WRITES, 0)
    try:
        for log in logs.values():  # keys, the first data key and the connection, off the clock
            log.append(_event(-1))
        n = 0
        for round_index in range(rounds):
            order = WRITES if round_index % 2 == 0 else WRITES[::-1]
            for write in order:
                before = trips.total() if trips else 0
                for _ in range(appends):
                    started = time.perf_counter()
                    logs[write].append(_event(n))
                    times[write].append((time.perf_counter() - started) * 1000.0)
                    n += 1
                calls[write] += (trips.total() - before) if trips else 0
    finally:
        documents.close()
    rows = []
    for write in WRITES:
        found = sorted(times[write])
        rows.append(
            {
                "write": write,
                "appends": len(found),
                "p50_ms": round(statistics.median(found), 3),
                "p99_ms": round(found[min(len(found) - 1, int(len(found) * 0.99))], 3),
                "mean_ms": round(statistics.fmean(found), 3),
                "round_trips_per_append": round(calls[write] / len(found), 2) if trips else None,
            }
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    about = report["machine"]
    lines = [
        f"Audit commit, {report['started']}: {about['cpu']}, {about['cores']} cores, "
        f"Python {about['python']}.",
        "",
        f"`AuditLog.append` from one thread (one entry, one batch, one write per append), "
        f"{report['appends']} appends per write path per round, {report['rounds']} rounds, "
        "the order alternated.",
        "",
        "| store | write | appends | p50 ms | p99 ms | mean ms | round trips per append |",
        "|---|---|---|---|---|---|---|",
    ]
    for store in report["stores"]:
        for row in store["rows"]:
            trips = row["round_trips_per_append"]
            lines.append(
                f"| {store['store']} | {row['write']} | {row['appends']} | {row['p50_ms']} | "
                f"{row['p99_ms']} | {row['mean_ms']} | {'-' if trips is None else trips} |"
            )
    return "\n".join(lines) + "\n"


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="an audit commit: set_many against a transaction")
    audit.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    audit.add_argument("--appends", type=int, default=200, help="appends per path per round (200)")
    audit.add_argument("--rounds", type=int, default=4, help="rounds, the order alternated (4)")
    audit.add_argument("--firestore", metavar="HOST:PORT", help="a Firestore emulator to measure")


def run(args: Any, about: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if args.appends < 1 or args.rounds < 1:
        raise ValueError("--appends and --rounds must be at least 1")
    report: dict[str, Any] = {
        "machine": about,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "appends": args.appends,
        "rounds": args.rounds,
        "stores": [],
    }
    targets: list[tuple[str, str | None]] = [("embedded SQLite", None)]
    if args.firestore:
        targets.append(("Firestore emulator", args.firestore))
    for name, firestore in targets:
        with tempfile.TemporaryDirectory(prefix="ipo-bench-audit-") as folder:
            settings = _settings(Path(folder), firestore)
            rows = measure_store(
                settings, appends=args.appends, rounds=args.rounds, counted=firestore is not None
            )
        report["stores"].append({"store": name, "rows": rows})
    return markdown(report), report
