"""Every model registered once for the modules that only read and predict."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.api.routes import served_models
from tests.support.fixtures import SEED, Stack, embedded_stack, serving, trained_risk
from tools.training.base import register_built
from tools.training.builders import build, build_order


@pytest.fixture(scope="session")
def full_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Every model registered and promoted as scripts/train_models.py does (risk from the
    tests' smaller training set); built once, so a test using it must not change it."""
    stack = embedded_stack(tmp_path_factory.mktemp("all-models"))
    register_built(stack.lifecycle, trained_risk(), version="1.0.0", created_by="tests")
    for model_id in build_order(m for m in served_models() if m != "risk"):
        for minor, built in enumerate(build(model_id, seed=SEED, registry=stack.registry)):
            register_built(stack.lifecycle, built, version=f"1.{minor}.0", created_by="tests")
    try:
        yield stack
    finally:
        stack.services.close()


@pytest.fixture
def installed(full_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with serving(full_stack, monkeypatch.setenv) as stack:
        yield stack
