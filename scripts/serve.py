"""Serve every function on one local gateway, with gunicorn.

    python scripts/serve.py [--host 127.0.0.1] [--port 8080] [--workers CORES] [--threads 4]

Prints the line that points ipoctl at the server and a ready-to-paste curl line once it
listens. ``PORT`` overrides the port.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication

from common.backends import build_backends
from common.core.config import Settings
from common.core.errors import NotFoundError, ServiceError
from common.registry.records import Registry
from tools import gateway_worker
from tools.cli.client import URL_VARIABLE
from tools.local import (
    DEMO_PERMISSIONS,
    development_token,
    ensure_local_secrets,
    settings_or_exit,
)

DEMO_MODEL = "risk"
THREADS = 4
"""Threads per process: enough to overlap I/O (store, Redis) without GIL thrashing."""


SWITCH_INTERVAL_S = 0.005
"""How long a thread may hold the GIL while another waits for it (Python's default 5 ms)."""


def default_processes() -> int:
    """One server process per core: Python runs one thread at a time per process."""
    return os.cpu_count() or 1


class Gateway(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], banner: str) -> None:
        self._options = options
        self._banner = banner
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        if self._banner:
            self.cfg.set("when_ready", lambda _server: print(self._banner, flush=True))

    def load(self) -> Any:
        from tools.gateway import create_app

        return create_app()


def _banner(settings: Settings, base: str) -> str:
    backends = build_backends(settings)
    registry = Registry(backends.documents, backends.artifacts)
    example, problem = None, f"no {DEMO_MODEL} model is in production"
    try:
        production = registry.get_model(DEMO_MODEL).production_version
        if production is not None:
            example = registry.get_version(DEMO_MODEL, production).example
    except NotFoundError:
        pass
    except ServiceError as exc:
        problem = f"the registry could not be read ({exc.message})"
    finally:
        backends.close()
    lines = [
        f"Serving every function on {base}  (health: {base}/healthz)",
        f"Point ipoctl at it: export {URL_VARIABLE}={base}",
    ]
    if example is None:
        lines.append(f"No example request to show: {problem}. Run `make train` to build one.")
        return "\n".join(lines)
    token = development_token(
        settings, subject="local-demo", permissions=DEMO_PERMISSIONS, ttl_s=24 * 3600
    )
    body = json.dumps({"instances": [example]}, separators=(",", ":"))
    curl = (
        f"curl -sS -X POST {base}/v1/predict/{DEMO_MODEL} "
        f"-H 'Content-Type: application/json' "
        f"-H {shlex.quote('Authorization: Bearer ' + token)} "
        f"-d {shlex.quote(body)}"
    )
    lines += [
        "Try a prediction (this token may read models, predict and explain for 24 hours; "
        "`make token` prints an admin token valid for an hour):",
        curl,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve every function on one local gateway.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=os.environ.get("PORT", "8080"))
    parser.add_argument(
        "--workers", type=int, default=default_processes(), help="server processes (default: cores)"
    )
    parser.add_argument("--threads", type=int, default=THREADS, help="threads per process")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=SWITCH_INTERVAL_S,
        help="seconds a thread may hold the GIL while another waits (sys.setswitchinterval)",
    )
    parser.add_argument(
        "--no-gc-freeze", action="store_true", help="leave start-up objects to the collector"
    )
    parser.add_argument(
        "--stage-timers",
        metavar="FILE",
        help="profiling: time each stage of a request into FILE.<pid>.json (stage_timers.py)",
    )
    args = parser.parse_args(argv)

    settings = settings_or_exit("serve")
    ensure_local_secrets(settings)
    base = f"http://{args.host}:{args.port}"
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": 1,
        "threads": args.threads,
        # gthread, answering what gunicorn refuses in the one JSON error shape
        "worker_class": "tools.gateway_worker.GatewayWorker",
        "reuse_port": True,
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": None,
        "loglevel": "warning",
        "child_exit": _worker_exited,
        "post_worker_init": functools.partial(
            _preload_models,
            switch_interval_s=args.switch_interval,
            freeze=not args.no_gc_freeze,
            stage_timers=args.stage_timers,
        ),
    }
    banner = _banner(settings, base)
    # Each worker writes its metrics here; /metrics sums them (common/api/metrics.py).
    metrics_dir = tempfile.mkdtemp(prefix="ipo-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _serve(options, banner, max(1, args.workers))
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(options: dict[str, Any], banner: str, processes: int) -> int:
    """Run one single-worker gunicorn per process, all bound to the port with SO_REUSEPORT.

    With one gunicorn of several workers, the workers share one listening socket and the
    first to wake takes every new connection, so a few keep-alive clients all land on
    one process (one core). With a socket per process the kernel spreads connections
    across them, at random; the processes then even them out (``ConnectionShares`` in
    tools/gateway_worker.py).
    """
    if processes == 1:
        Gateway(options, banner).run()
        return 0
    shares = gateway_worker.ConnectionShares(processes)
    children = []
    for index in range(processes):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            gateway_worker.shares = shares.claim(index)
            Gateway(options, banner if index == 0 else "").run()
            os._exit(0)
        children.append(pid)

    def stop(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM if signum == signal.SIGINT else signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


def _preload_models(
    worker: Any, *, switch_interval_s: float, freeze: bool, stage_timers: str | None = None
) -> None:
    """Load the production models before the process accepts a connection; then move
    everything start-up made out of the collector's reach (``gc.freeze``), so a full
    collection under load walks only what requests allocate, and set the GIL's switch
    interval."""
    from common.services import get_services
    from common.serving.pipeline import preload

    services = get_services()
    preload(
        services.snapshots, services.pool, [m.model_id for m in services.registry.list_models()]
    )
    if stage_timers:
        import stage_timers as timers

        timers.install(worker.wsgi, services, stage_timers)
    if freeze:
        gc.collect()
        gc.freeze()
    sys.setswitchinterval(switch_interval_s)


def _worker_exited(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # untyped upstream


if __name__ == "__main__":
    raise SystemExit(main())
