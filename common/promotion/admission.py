"""Whether a staging version may serve a request that names it explicitly.

``/v2/models/{model}/versions/{version}/infer`` may name a version outside the serving
state. Such a version serves only if it is in staging and passes what a canary must pass
(``Lifecycle.serving_problems``: its gate's criteria, then verification against its golden
set). Verification predicts the whole golden set, so its outcome is kept for the snapshot
TTL: a stage change or a new gate is seen within that time, as a promotion is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from common.core.errors import ConflictError
from common.promotion.lifecycle import Lifecycle
from common.registry.records import ModelVersion

VERSIONS_KEPT = 256
"""Staging versions whose outcome one instance keeps, each for the snapshot TTL."""


class StagingAdmission:
    """``(model id, version) -> record`` for a staging version that may serve, else 409
    naming its stage or each failed criterion; an unknown version is 404."""

    def __init__(
        self, lifecycle: Lifecycle, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lifecycle = lifecycle
        self._ttl_s = ttl_s
        self._clock = clock
        # at most VERSIONS_KEPT: a version checked once is not held after its TTL
        self._checked: TTLCache[tuple[str, str], list[dict[str, Any]]] = TTLCache(
            VERSIONS_KEPT, ttl=ttl_s if ttl_s > 0 else 1.0, timer=clock
        )
        self._lock = threading.Lock()

    def __call__(self, model_id: str, version: str) -> ModelVersion:
        record = self._lifecycle.registry.get_version(model_id, version)
        if record.stage != "staging":
            raise ConflictError(
                f"{model_id} {version} is {record.stage}; a version named in the path serves "
                "only as the production or canary version, an arm of a running experiment, "
                "or a staging version that passes its gate and verification"
            )
        problems = self._problems(record)
        if problems:
            raise ConflictError(
                f"{model_id} {version} is staging but does not pass what serving requires: "
                + ", ".join(str(p.get("criterion", "criterion")) for p in problems),
                details=problems,
            )
        return record

    def _problems(self, record: ModelVersion) -> list[dict[str, Any]]:
        key = (record.model_id, record.version)
        with self._lock:
            kept = self._checked.get(key)
        if kept is not None:
            return kept
        problems = self._lifecycle.serving_problems(record)
        if self._ttl_s > 0:
            with self._lock:
                self._checked[key] = problems
        return problems
