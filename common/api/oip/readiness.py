"""Server readiness: the registry answers and every serving artifact is there, intact.

Each production (and canary) version's artifact is checked against the SHA-256 its record
holds through ``ArtifactStore.sha256``, without loading a model: Cloud Storage answers from
the hash recorded in the object's metadata, the local folder reads and hashes the file.
A model's own readiness (``/v2/models/{model}/ready``) loads it, on its own function.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from common.core.errors import NotFoundError, ServiceError
from common.registry.records import Registry

log = logging.getLogger("ipo.http")


class Hashes(Protocol):
    """What readiness needs of the artifact store (``ArtifactStore.sha256``)."""

    def sha256(self, key: str) -> str: ...


def server_problems(registry: Registry, artifacts: Hashes) -> list[dict[str, Any]]:
    """What keeps the server from being ready; empty when it is. A store's own message
    goes to the log only (it names hosts and paths)."""
    try:
        models = registry.list_models()
    except ServiceError as exc:
        log.warning("readiness: registry unreadable: %s", exc.message)
        return [{"check": "registry", "message": "the model registry did not answer"}]
    problems: list[dict[str, Any]] = []
    for model in models:
        serving = {"production": model.production_version}
        if model.canary_version is not None and model.canary_percentage > 0:
            serving["canary"] = model.canary_version
        for role, version in serving.items():
            if version is None:
                continue
            found = {"check": "artifact", "model": model.model_id, "version": version, "role": role}
            try:
                record = registry.get_version(model.model_id, version)
                digest = artifacts.sha256(record.artifact_key)
            except NotFoundError:
                problems.append({**found, "message": "its record or its artifact is missing"})
                continue
            except ServiceError as exc:
                log.warning(
                    "readiness: %s %s not checked: %s", model.model_id, version, exc.message
                )
                problems.append({**found, "message": "its artifact could not be read"})
                continue
            if digest != record.artifact_sha256:
                message = "its artifact's SHA-256 differs from the registered one"
                problems.append({**found, "message": message})
    return problems
