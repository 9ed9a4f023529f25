"""Start-up objects frozen out of the collector's reach after a process's first answer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from common.api import collector
from tests.conftest import function_client
from tests.support.fixtures import Stack


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(collector, "_frozen_in", 0)  # as a new process
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's objects go back to the collector


def test_the_first_answer_freezes_start_up_objects_once_it_is_sent(
    stack: Stack, unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    freezes: list[int] = []
    freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (freezes.append(1), freeze())[1])
    client = function_client("predict_risk")
    example = stack.registry.get_version("risk", "1.0.0").example
    refused = client.post("/v1/predict/risk", json={"instances": [example]})
    refused.close()
    assert refused.status_code == 401
    assert gc.get_freeze_count() == 0  # a refusal need not have loaded the model

    response = client.post(
        "/v1/predict/risk", json={"instances": [example]}, headers=stack.headers()
    )
    assert response.status_code == 200
    assert gc.get_freeze_count() == 0  # not while the answer is being sent
    response.close()
    assert gc.get_freeze_count() > 1000  # the modules, services and the loaded model

    again = client.post("/v1/predict/risk", json={"instances": [example]}, headers=stack.headers())
    again.close()
    assert freezes == [1]  # once per process
