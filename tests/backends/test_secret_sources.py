"""One contract for every SecretSource, then what each source adds.

Secret Manager has no emulator, so it is exercised through a fake at the client boundary
that answers with the real response types.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from google.api_core import exceptions as gexc
from google.cloud.secretmanager_v1 import AccessSecretVersionResponse, SecretPayload

from common.backends.base import SecretSource
from common.backends.env_secrets import EnvSecretSource
from common.backends.secret_manager import SecretManagerSource
from common.core.config import Settings
from common.core.errors import IntegrityError, NotFoundError, UnavailableError

PROJECT = "test-project"


class FakeSecretManager:
    """Stands in for SecretManagerServiceClient: same call, same response shape."""

    def __init__(self, secrets: dict[str, bytes], failures: list[Exception] | None = None) -> None:
        self.secrets = secrets
        self.failures = list(failures or [])
        self.requests: list[dict[str, Any]] = []
        self.corrupt = False
        self.send_crc = True

    def access_secret_version(
        self, *, request: dict[str, str], retry: Any = None, timeout: float | None = None
    ) -> AccessSecretVersionResponse:
        self.requests.append({"name": request["name"], "retry": retry, "timeout": timeout})
        if self.failures:
            raise self.failures.pop(0)
        name = request["name"]
        if name not in self.secrets:
            raise gexc.NotFound(f"Secret Version [{name}] not found.")
        data = self.secrets[name]
        payload = SecretPayload(data=data)
        if self.send_crc:
            payload.data_crc32c = google_crc32c.value(data) ^ (1 if self.corrupt else 0)
        return AccessSecretVersionResponse(name=name, payload=payload)


def version(name: str, number: str) -> str:
    return f"projects/{PROJECT}/secrets/{name}/versions/{number}"


def sm_settings(pins: str = "jwt-signing-key=3", **extra: str) -> Settings:
    return Settings.from_environ(
        {
            "IPO_SECRET_SOURCE": "secret-manager",
            "IPO_GCP_PROJECT": PROJECT,
            "IPO_PINNED_SECRETS": pins,
            "IPO_BACKEND_TIMEOUT_S": "2",
            **extra,
        }
    )


# --- the contract, on every source ----------------------------------------------------


def env_source(tmp_path: Path) -> SecretSource:
    return EnvSecretSource(None, {"IPO_SECRET_JWT_SIGNING_KEY": "s3cret-value"})


def env_file_source(tmp_path: Path) -> SecretSource:
    path = tmp_path / "test.env"
    path.write_text("IPO_SECRET_JWT_SIGNING_KEY=s3cret-value\n")
    return EnvSecretSource(path, {})


def secret_manager_source(tmp_path: Path) -> SecretSource:
    fake = FakeSecretManager({version("jwt-signing-key", "3"): b"s3cret-value"})
    return SecretManagerSource(sm_settings(), client=fake)


@pytest.fixture(
    params=[env_source, env_file_source, secret_manager_source],
    ids=["env", "env-file", "secret-manager"],
)
def secret_source(request: pytest.FixtureRequest, tmp_path: Path) -> SecretSource:
    factory: Callable[[Path], SecretSource] = request.param
    return factory(tmp_path)


def test_known_secret(secret_source: SecretSource) -> None:
    assert secret_source.get("jwt-signing-key") == "s3cret-value"


def test_unknown_secret_is_not_found(secret_source: SecretSource) -> None:
    with pytest.raises(NotFoundError, match="other-key") as info:
        secret_source.get("other-key")
    assert info.value.status == 404


# --- environment and .env file --------------------------------------------------------


def test_environment_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "test.env"
    path.write_text("IPO_SECRET_JWT_SIGNING_KEY=from-file\nIPO_SECRET_OTHER=file-only\n")
    source = EnvSecretSource(path, {"IPO_SECRET_JWT_SIGNING_KEY": "from-env"})
    assert source.get("jwt-signing-key") == "from-env"
    assert source.get("other") == "file-only"


def test_env_file_syntax(tmp_path: Path) -> None:
    path = tmp_path / "test.env"
    path.write_text(
        "# a comment\n"
        "\n"
        "IPO_SECRET_PLAIN=plain value\n"
        'IPO_SECRET_DOUBLE="quoted # not a comment"\n'
        "IPO_SECRET_SINGLE='single'\n"
        "  IPO_SECRET_SPACED =  padded  \n"
        "export IPO_SECRET_EXPORTED=yes\n"
        "IPO_SECRET_EQUALS=a=b=c\n"
    )
    source = EnvSecretSource(path, {})
    assert source.get("plain") == "plain value"
    assert source.get("double") == "quoted # not a comment"
    assert source.get("single") == "single"
    assert source.get("spaced") == "padded"
    assert source.get("exported") == "yes"
    assert source.get("equals") == "a=b=c"


def test_missing_secret_names_the_variable_to_set(tmp_path: Path) -> None:
    source = EnvSecretSource(tmp_path / "absent.env", {})
    with pytest.raises(NotFoundError, match="IPO_SECRET_JWT_SIGNING_KEY") as info:
        source.get("jwt-signing-key")
    assert "absent.env" in info.value.message


def test_file_is_read_once_and_lazily(tmp_path: Path) -> None:
    path = tmp_path / "test.env"
    source = EnvSecretSource(path, {})
    path.write_text("IPO_SECRET_A=first\n")  # written after construction: still seen
    assert source.get("a") == "first"
    path.write_text("IPO_SECRET_A=second\nIPO_SECRET_B=new\n")
    assert source.get("a") == "first"
    with pytest.raises(NotFoundError):
        source.get("b")


def test_malformed_file_is_reported_without_its_values(tmp_path: Path) -> None:
    path = tmp_path / "test.env"
    path.write_text("IPO_SECRET_A=fine\nthis line leaks-a-secret\n")
    with pytest.raises(UnavailableError, match="line 2") as info:
        EnvSecretSource(path, {}).get("a")
    assert "leaks-a-secret" not in info.value.message


def test_invalid_secret_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid secret name"):
        EnvSecretSource(None, {}).get("../etc")


# --- Secret Manager at the client boundary ---------------------------------------------


def test_pinned_versions_are_requested_never_latest() -> None:
    fake = FakeSecretManager(
        {version("jwt-signing-key", "3"): b"jwt", version("audit-key", "12"): b"audit"}
    )
    source = SecretManagerSource(sm_settings("jwt-signing-key=3,audit-key=12"), client=fake)
    assert source.get("jwt-signing-key") == "jwt"
    assert source.get("audit-key") == "audit"
    names = [r["name"] for r in fake.requests]
    assert names == [version("jwt-signing-key", "3"), version("audit-key", "12")]
    assert not any("latest" in name for name in names)
    assert all(r["timeout"] == 2.0 for r in fake.requests)


def test_unpinned_secret_is_refused_without_a_call() -> None:
    fake = FakeSecretManager({version("other", "1"): b"x"})
    source = SecretManagerSource(sm_settings(), client=fake)
    with pytest.raises(NotFoundError, match="IPO_PINNED_SECRETS"):
        source.get("other")
    assert fake.requests == []


def test_values_are_cached_per_instance() -> None:
    fake = FakeSecretManager({version("jwt-signing-key", "3"): b"jwt"})
    source = SecretManagerSource(sm_settings(), client=fake)
    assert source.get("jwt-signing-key") == source.get("jwt-signing-key") == "jwt"
    assert len(fake.requests) == 1


def test_crc_mismatch_is_refused_and_not_cached() -> None:
    fake = FakeSecretManager({version("jwt-signing-key", "3"): b"jwt"})
    fake.corrupt = True
    source = SecretManagerSource(sm_settings(), client=fake)
    with pytest.raises(IntegrityError, match="CRC32C"):
        source.get("jwt-signing-key")
    fake.corrupt = False
    assert source.get("jwt-signing-key") == "jwt"


def test_payload_without_crc_is_accepted() -> None:
    fake = FakeSecretManager({version("jwt-signing-key", "3"): b"jwt"})
    fake.send_crc = False
    assert SecretManagerSource(sm_settings(), client=fake).get("jwt-signing-key") == "jwt"


def test_not_found_version_maps_to_not_found() -> None:
    source = SecretManagerSource(sm_settings(), client=FakeSecretManager({}))
    with pytest.raises(NotFoundError, match="versions/3"):
        source.get("jwt-signing-key")


def test_transient_errors_are_retried_within_the_attempts() -> None:
    fake = FakeSecretManager(
        {version("jwt-signing-key", "3"): b"jwt"},
        failures=[gexc.ServiceUnavailable("down"), gexc.DeadlineExceeded("slow")],
    )
    source = SecretManagerSource(sm_settings(IPO_BACKEND_ATTEMPTS="3"), client=fake)
    assert source.get("jwt-signing-key") == "jwt"
    assert len(fake.requests) == 3
    assert all(r["retry"] is None for r in fake.requests)  # the client's 60 s retry is off


def test_persistent_outage_is_unavailable() -> None:
    fake = FakeSecretManager({}, failures=[gexc.ServiceUnavailable("down")] * 2)
    source = SecretManagerSource(sm_settings(IPO_BACKEND_ATTEMPTS="2"), client=fake)
    with pytest.raises(UnavailableError, match="2 attempts") as info:
        source.get("jwt-signing-key")
    assert info.value.status == 503


def test_permission_denied_is_unavailable_at_once() -> None:
    fake = FakeSecretManager({}, failures=[gexc.PermissionDenied("no access")])
    source = SecretManagerSource(sm_settings(), client=fake)
    with pytest.raises(UnavailableError, match="PermissionDenied"):
        source.get("jwt-signing-key")
    assert len(fake.requests) == 1


def test_project_is_required() -> None:
    with pytest.raises(ValueError, match="IPO_GCP_PROJECT"):
        SecretManagerSource(Settings.from_environ({}), client=FakeSecretManager({}))
