"""Where a request's time goes in a serving process: timers around each stage.

``scripts/serve.py --stage-timers FILE`` installs these in every worker after start-up
(a profiling run only: the wrappers cost a few microseconds per stage). Each stage's
thread CPU time (``time.thread_time``: the GIL held or released in a system call, not
waiting for it) and wall time are summed per process and written to ``FILE.<pid>.json``
every 100 requests. ``python scripts/stage_timers.py FILE`` sums them and prints the table
per request. The last column is the mean wall time of each stage over the slowest 1 % of
the last ``RECENT`` requests of each process (by the application's whole wall time):
the stage that grows there is where the tail comes from. Ranking them takes a few
milliseconds of the GIL once there are thousands, so past ``RANK_EVERY`` requests it is
done every ``RANK_EVERY``, outside the timers' lock: once every 100 would itself stall
the slowest 1 %.

Stages, each exclusive of the ones inside it: the WSGI application as a whole (the rest
is the HTTP server's), the body read, authentication, body parsing and validation, the
instances' validation and the model (inside the handler), the response's encoding, the
audit entry (hashes and event), the payload log's sampling and sealing, the audit
append (MAC, seal, group commit: the wall time includes waiting for the batch's
commit), the log line and the metrics.
"""

from __future__ import annotations

import functools
import heapq
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = (
    "app",
    "body read",
    "auth",
    "JSON parse",
    "body validation",
    "instance validation",
    "model",
    "response encode",
    "audit event",
    "payload log",
    "audit append",
    "log line",
    "metrics",
)
DUMP_EVERY = 100
RECENT = 20_000
RANK_EVERY = 2_000

_lock = threading.Lock()
_cpu = dict.fromkeys(STAGES, 0.0)
_wall = dict.fromkeys(STAGES, 0.0)
_state = {"requests": 0}
_ranked: dict[str, Any] = {"tail": {"requests": 0, "wall_s": {}}}
"""The slowest 1 % as last ranked."""
_local = threading.local()
_recent: deque[tuple[float, dict[str, float]]] = deque(maxlen=RECENT)
"""(the application's wall time, each stage's) of the last requests."""


def _timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its time added to ``stage``, less what nested stages took."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        inner = getattr(_local, "inner", None)
        _local.inner = [0.0, 0.0]
        if stage == "app":
            _local.request = {}
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent_cpu, spent_wall = time.thread_time() - cpu, time.perf_counter() - wall
            nested = _local.inner
            _local.inner = inner
            if inner is not None:
                inner[0] += spent_cpu
                inner[1] += spent_wall
            request: dict[str, float] = getattr(_local, "request", {})
            request[stage] = request.get(stage, 0.0) + spent_wall - nested[1]
            with _lock:
                _cpu[stage] += spent_cpu - nested[0]
                _wall[stage] += spent_wall - nested[1]
                dump = rank = False
                if stage == "app":
                    _recent.append((spent_wall, request))
                    _state["requests"] += 1
                    done = _state["requests"]
                    dump = done % DUMP_EVERY == 0
                    rank = dump and (done <= RANK_EVERY or done % RANK_EVERY == 0)
                    recent = list(_recent) if rank else []
                    found = _totals() if dump else {}
            if rank:
                _ranked["tail"] = _slowest(recent)
            if dump:
                _write({**found, "tail": _ranked["tail"]})

    return wrapper


def _totals() -> dict[str, Any]:
    return {"requests": _state["requests"], "cpu_s": dict(_cpu), "wall_s": dict(_wall)}


def _slowest(recent: list[tuple[float, dict[str, float]]]) -> dict[str, Any]:
    """Each stage's wall time summed over the slowest 1 % of ``recent``."""
    slowest = heapq.nlargest(max(1, len(recent) // 100), recent, key=lambda timed: timed[0])
    tail = {stage: sum(s.get(stage, 0.0) for _, s in slowest) for stage in STAGES}
    return {"requests": len(slowest), "wall_s": tail}


def _write(found: dict[str, Any]) -> None:
    path = Path(f"{os.environ['IPO_STAGE_TIMERS']}.{os.getpid()}.json")
    path.write_text(json.dumps(found) + "\n")


def install(app: Any, services: Any, file: str) -> None:
    """Wrap the stages of ``app`` (the gateway's Flask app) and ``services``."""
    from common.api import dispatch, metrics
    from common.core import logs
    from common.serving import predictor

    os.environ["IPO_STAGE_TIMERS"] = file
    app.wsgi_app = _timed("app", app.wsgi_app)
    for module, name, stage in (
        (dispatch, "_read_body", "body read"),
        (dispatch, "_parse_json", "JSON parse"),
        (dispatch, "validate", "body validation"),
        (predictor, "validate", "instance validation"),
        (dispatch, "_json_response", "response encode"),
        (dispatch, "_audit", "audit event"),
        (dispatch, "_kept", "payload log"),
        (logs, "request_line", "log line"),
        (logs, "cache_stats_line", "log line"),
        (metrics, "observe_request", "metrics"),
    ):
        setattr(module, name, _timed(stage, getattr(module, name)))
    services.verifier.authenticate = _timed("auth", services.verifier.authenticate)
    services.audit.append = _timed("audit append", services.audit.append)
    from common.models.risk import RiskRuntime

    RiskRuntime.predict = _timed("model", RiskRuntime.predict)  # type: ignore[method-assign]


def read(file: str) -> dict[str, Any]:
    """The stage totals of every process that wrote ``FILE.<pid>.json``, summed."""
    total: dict[str, Any] = {"requests": 0, "cpu_s": {}, "wall_s": {}}
    tail: dict[str, Any] = {"requests": 0, "wall_s": {}}
    for part in Path(file).parent.glob(Path(file).name + ".*.json"):
        found = json.loads(part.read_text())
        total["requests"] += found["requests"]
        for kind in ("cpu_s", "wall_s"):
            for stage, value in found[kind].items():
                total[kind][stage] = total[kind].get(stage, 0.0) + value
        if "tail" in found:
            tail["requests"] += found["tail"]["requests"]
            for stage, value in found["tail"]["wall_s"].items():
                tail["wall_s"][stage] = tail["wall_s"].get(stage, 0.0) + value
    total["tail"] = tail
    return total


def table(total: dict[str, Any]) -> str:
    """Milliseconds per request of each stage, CPU and wall, as a markdown table."""
    if not total["requests"]:
        return "nothing recorded yet: each process writes its file every 100 requests"
    requests = int(total["requests"])
    tail = total.get("tail", {"requests": 0, "wall_s": {}})
    slowest = max(1, int(tail["requests"]))
    lines = [
        "| stage | CPU ms | wall ms | wall ms, slowest 1 % |",
        "|---|---|---|---|",
    ]
    for stage in STAGES:
        cpu = total["cpu_s"].get(stage, 0.0) * 1000.0 / requests
        wall = total["wall_s"].get(stage, 0.0) * 1000.0 / requests
        worst = tail["wall_s"].get(stage, 0.0) * 1000.0 / slowest
        lines.append(f"| {stage} | {cpu:.3f} | {wall:.3f} | {worst:.3f} |")
    return f"{requests} requests ({tail['requests']} in the slowest 1 %)\n\n" + "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Print where a request's time goes.")
    parser.add_argument("file", help="the FILE given to --stage-timers (it reads FILE.*.json)")
    found = read(parser.parse_args().file)
    print(table(found))
    raise SystemExit(0 if found["requests"] else 1)
