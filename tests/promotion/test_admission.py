"""Staging admission keeps each version's outcome for the TTL, and a bounded number of them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from common.promotion.admission import VERSIONS_KEPT, StagingAdmission


class Lifecycle:
    """Counts how often serving problems are computed."""

    def __init__(self) -> None:
        self.checks = 0

    def serving_problems(self, record: Any) -> list[dict[str, Any]]:
        self.checks += 1
        return []


def test_outcomes_are_kept_for_the_ttl_and_bounded_in_number() -> None:
    now = [0.0]
    lifecycle = Lifecycle()
    admission = StagingAdmission(lifecycle, ttl_s=10.0, clock=lambda: now[0])  # type: ignore[arg-type]
    first = SimpleNamespace(model_id="risk", version="2.0.0")
    admission._problems(first)  # type: ignore[arg-type]
    admission._problems(first)  # type: ignore[arg-type]
    assert lifecycle.checks == 1
    for i in range(VERSIONS_KEPT + 100):
        admission._problems(SimpleNamespace(model_id="risk", version=f"9.{i}.0"))  # type: ignore[arg-type]
        assert len(admission._checked) <= VERSIONS_KEPT
    now[0] += 10.0
    admission._problems(first)  # type: ignore[arg-type]
    assert len(admission._checked) == 1  # the others expired with the TTL
