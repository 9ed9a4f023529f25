"""Secrets from the environment or a ``.env`` file: the embedded default.

Secret ``jwt-signing-key`` is the variable ``IPO_SECRET_JWT_SIGNING_KEY``. The process
environment wins over the file, so a deployment can override one value without editing
the file. The file is read once, on first use, and messages never contain values.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from common.backends.base import SecretSource
from common.core.errors import NotFoundError, UnavailableError

PREFIX = "IPO_SECRET_"
_SECRET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def variable_name(secret: str) -> str:
    """``jwt-signing-key`` → ``IPO_SECRET_JWT_SIGNING_KEY``."""
    if not _SECRET_NAME.match(secret):
        raise ValueError(f"invalid secret name {secret!r}")
    return PREFIX + secret.upper().replace("-", "_")


def parse_env_file(text: str, source: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` starts a comment line; one pair of quotes is removed.

    A ``#`` after a value is part of the value: secrets may contain it.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _VAR_NAME.match(key):
            raise UnavailableError(f"{source} line {number} is not KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


class EnvSecretSource(SecretSource):
    def __init__(self, env_file: Path | None, environ: Mapping[str, str] | None = None) -> None:
        self._env_file = env_file
        self._environ = os.environ if environ is None else environ
        self._file_values: dict[str, str] | None = None
        self._lock = threading.Lock()

    def _from_file(self) -> dict[str, str]:
        """The file's pairs, read on first use only; a missing file holds no secrets."""
        with self._lock:
            if self._file_values is None:
                values: dict[str, str] = {}
                if self._env_file is not None:
                    try:
                        text = self._env_file.read_text(encoding="utf-8")
                    except FileNotFoundError:
                        text = ""
                    except (OSError, UnicodeDecodeError) as exc:
                        raise UnavailableError(
                            f"cannot read secrets file {self._env_file}: {exc}"
                        ) from None
                    values = parse_env_file(text, str(self._env_file))
                self._file_values = values
            return self._file_values

    def get(self, name: str) -> str:
        variable = variable_name(name)
        value = self._environ.get(variable) or self._from_file().get(variable)
        if not value:
            where = f" or in {self._env_file}" if self._env_file is not None else ""
            raise NotFoundError(
                f"secret {name!r} is not set: set {variable} in the environment{where}"
            )
        return value
