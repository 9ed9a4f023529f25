"""A Gordon terminal value whose spread r - g is below the assumption set's min_spread is
refused through HTTP, whether the rate is given or computed by CAPM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import function_client
from tests.support.fixtures import SEED, Stack, embedded_stack, hand_company, serving
from tools.training.base import register_built
from tools.training.builders import build

COMPANY: dict[str, Any] = {
    k: v for k, v in hand_company().items() if k not in ("wacc", "terminal_growth")
}


@pytest.fixture(scope="module")
def dcf_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = embedded_stack(tmp_path_factory.mktemp("dcf-spread"))
    for minor, built in enumerate(build("dcf", seed=SEED, registry=stack.registry)):
        register_built(stack.lifecycle, built, version=f"1.{minor}.0", created_by="tests")
    try:
        yield stack
    finally:
        stack.services.close()


@pytest.fixture
def installed(dcf_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with serving(dcf_stack, monkeypatch.setenv) as stack:
        yield stack


def predict(stack: Stack, *instances: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = function_client("predict_dcf").post(
        "/v1/predict/dcf", json={"instances": list(instances)}, headers=stack.headers()
    )
    return response.status_code, response.get_json()


def test_a_given_rate_a_hair_above_terminal_growth_is_refused(installed: Stack) -> None:
    status, body = predict(
        installed,
        {**COMPANY, "wacc": 0.10, "terminal_growth": 0.03},
        {**COMPANY, "wacc": 0.03, "terminal_growth": 0.0299},
    )
    assert status == 422, body
    (detail,) = body["error"]["details"]
    assert detail["field"] == "instances[1].terminal_growth"
    assert detail["rule"] == "terminal_spread_below_minimum"
    assert detail["value"] == 0.0299
    message = detail["message"]
    assert "discount rate 0.03 " in message
    assert "terminal growth 0.0299" in message
    assert "spread of 0.0001" in message
    assert "minimum 0.005" in message
    assert "CAPM" not in message


def test_a_capm_rate_a_hair_above_terminal_growth_is_refused(installed: Stack) -> None:
    # CAPM: 0.01 + 0.4 x 0.05 = 0.03 with no debt; terminal growth 0.028 leaves 0.002.
    row = {
        **COMPANY,
        "risk_free_rate": 0.01,
        "beta": 0.4,
        "equity_risk_premium": 0.05,
        "debt_weight": 0.0,
        "terminal_growth": 0.028,
    }
    status, body = predict(installed, row)
    assert status == 422, body
    (detail,) = body["error"]["details"]
    assert detail["field"] == "instances[0].terminal_growth"
    assert detail["rule"] == "terminal_spread_below_minimum"
    assert "discount rate 0.03 (from CAPM)" in detail["message"]
    assert "terminal growth 0.028" in detail["message"]
    assert "spread of 0.002" in detail["message"]


def test_a_spread_of_exactly_the_minimum_is_valued(installed: Stack) -> None:
    status, body = predict(installed, {**COMPANY, "wacc": 0.03, "terminal_growth": 0.025})
    assert status == 200, body
    (out,) = body["predictions"]
    grid = out["sensitivity"]
    centre = grid["terminal_growths"].index(0.025)
    row = next(r for r in grid["rows"] if r["discount_rate"] == 0.03)
    assert row["value_per_share"][centre] == out["value_per_share"]
    assert out["monte_carlo"]["p5"] <= out["value_per_share"] <= out["monte_carlo"]["p95"]
