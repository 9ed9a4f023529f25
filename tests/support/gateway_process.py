"""The local gateway in a subprocess, as `make run` starts it: models trained into a temp
data dir first, then gunicorn serving every function until the block ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT

# The command-line client as installed into the virtual environment (`ipoctl` in pyproject).
IPOCTL = Path(sys.executable).with_name("ipoctl")


@dataclass
class Gateway:
    base: str
    output: Path
    environ: dict[str, str]
    pid: int
    """The gunicorn master (with ``--workers 1``); its worker serves the requests. With
    more, scripts/serve.py, whose children are a gunicorn master each."""

    def worker_pids(self) -> list[int]:
        return _children(self.pid)

    def serving_pids(self) -> list[int]:
        """The processes that answer requests, with ``--workers`` above 1."""
        return [worker for master in _children(self.pid) for worker in _children(master)]

    def banner(self) -> str:
        return self.output.read_text()


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_gateway(
    tmp: Path,
    *,
    models: str | None = "risk",
    extra_environ: Mapping[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Gateway]:
    """Train ``models`` (comma-separated; None: every model) into ``tmp``, then serve with
    ``workers`` processes of two threads.

    The environment is the test process's without its ``IPO_`` variables, plus
    ``extra_environ``."""
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IPO_")},
        "IPO_DATA_DIR": str(tmp / "data"),
        "IPO_ENV_FILE": str(tmp / "gateway.env"),
        "PORT": str(port),
        **(extra_environ or {}),
    }
    train = [sys.executable, "scripts/train_models.py", "--if-absent"]
    if models is not None:
        train += ["--models", models]
    subprocess.run(train, cwd=ROOT, env=environ, check=True, capture_output=True, timeout=120)
    output = tmp / "serve.out"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "scripts/serve.py", "--workers", str(workers), "--threads", "2"],
            cwd=ROOT,
            env=environ,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or still loading its models
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gateway did not start:\n{output.read_text()}")
            time.sleep(0.2)
        yield Gateway(base=base, output=output, environ=environ, pid=process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def script_token(gateway: Gateway, perms: str = "admin") -> str:
    """A token from `scripts/issue_token.py`, with the gateway's environment and secrets."""
    out = subprocess.run(
        [sys.executable, "scripts/issue_token.py", "--perms", perms],
        cwd=ROOT,
        env=gateway.environ,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip()
