"""A model's promotion gate as promotion applies it, defaults included: in the API answer
and in `ipoctl show`."""

from __future__ import annotations

from common.api.views import model_view
from common.promotion.gate import CLASSIFIER_DEFAULTS, spec_for
from tests.conftest import function_client
from tests.support.cli import ipoctl
from tests.support.fixtures import Stack


def test_a_model_without_its_own_gate_shows_the_defaults_that_apply(stack: Stack) -> None:
    undeclared = stack.registry.get_model("risk").model_copy(update={"gate": {}})
    assert model_view(undeclared)["gate"] == CLASSIFIER_DEFAULTS.model_dump(mode="json")


def test_the_api_answers_the_gate_promotion_applies(stack: Stack) -> None:
    stored = stack.registry.get_model("risk")
    response = function_client("list_models").get(
        "/v1/models/risk", headers=stack.headers(("model:read",))
    )
    assert response.status_code == 200
    gate = response.get_json()["gate"]
    assert gate == spec_for(stored.kind, stored.gate).model_dump(mode="json")
    assert {"metric": "accuracy", "op": ">=", "threshold": 0.85} in gate["criteria"]
    listed = function_client("list_models").get("/v1/models", headers=stack.headers())
    (risk,) = [m for m in listed.get_json()["models"] if m["model_id"] == "risk"]
    assert risk["gate"] == gate


def test_ipoctl_show_prints_the_effective_gate(stack: Stack) -> None:
    shown = ipoctl(stack.token(("model:read",)), "show", "risk")
    (line,) = [ln for ln in shown.splitlines() if ln.startswith("gate")]
    assert line.split(None, 1)[1].startswith(
        "accuracy >= 0.85, latency_p95_ms <= 500, precision >= 0.8, recall >= 0.75"
    )
