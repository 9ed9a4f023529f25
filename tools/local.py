"""Laptop set-up: signing and audit secrets in the local .env file, development tokens.

Only scripts import this module; no function does. In the cloud the signing secret lives
in Secret Manager and tokens come from the organisation's identity provider.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from common.backends import build_secret_source
from common.backends.local_files import FILE_MODE, tighten
from common.core.config import Settings
from common.security.auth import issue_token

ALL_PERMISSIONS = ("admin",)
DEMO_PERMISSIONS = ("model:read", "model:*:predict", "model:*:explain")


def settings_or_exit(program: str) -> Settings:
    """Settings for a command-line tool: a bad IPO_ variable is one line, not a traceback."""
    try:
        return Settings.from_environ()
    except ValueError as exc:
        raise SystemExit(f"{program}: {exc}") from None


def secret_variable(name: str) -> str:
    return "IPO_SECRET_" + name.upper().replace("-", "_")


def ensure_local_secrets(settings: Settings) -> bool:
    """Write random token-signing and audit secrets to the env file where none is
    configured; True if anything was written. An env file others may read is tightened
    to 0600 first."""
    if settings.secret_source != "env" or settings.env_file is None:  # noqa: S105
        return False
    path = Path(settings.env_file)
    tighten(path, FILE_MODE)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.split("=", 1)[0].strip() for line in existing.splitlines()}
    wanted = [
        variable
        for variable in map(secret_variable, (settings.jwt_secret_name, settings.audit_secret_name))
        if variable not in os.environ and variable not in present
    ]
    if not wanted:
        return False
    lines = "".join(f"{variable}={secrets.token_urlsafe(48)}\n" for variable in wanted)
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(prefix + lines)
    return True


def development_token(
    settings: Settings, *, subject: str, permissions: tuple[str, ...], ttl_s: int
) -> str:
    return issue_token(
        settings,
        build_secret_source(settings),
        subject=subject,
        permissions=permissions,
        ttl_s=ttl_s,
    )
