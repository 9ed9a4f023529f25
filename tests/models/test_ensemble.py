"""The ensemble: the documented formula, contributions that add up, errors naming components."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import pytest

from common.core.errors import IntegrityError, InvalidValuesError
from common.models.ensemble import EnsembleRuntime
from tests.support.fixtures import fake_components
from tools.training import ensemble_builder

RUNTIME = EnsembleRuntime.from_artifact(ensemble_builder.artifact())


def instance(x: float = 1.0) -> dict[str, dict[str, float]]:
    return {role: {"x": x} for role in ("dcf", "cca", "risk", "sentiment")}


def predict(rows: list[dict[str, dict[str, float]]], **values: float) -> list[dict]:
    instances = RUNTIME.instances_adapter().validate_python(rows)
    return RUNTIME.predict_composite(instances, None, fake_components(**values))


def test_neutral_company_is_valued_at_the_blend() -> None:
    (out,) = predict([instance()], dcf=20, cca=30, risk_score=50, sentiment=0)
    assert out["value_per_share"] == pytest.approx(0.6 * 20 + 0.4 * 30)


def test_risk_and_sentiment_move_the_value_as_documented() -> None:
    (out,) = predict([instance()], dcf=20, cca=30, risk_score=100, sentiment=1)
    base = 0.6 * 20 + 0.4 * 30
    expected = base * (1 - 0.15) * (1 + 0.05)
    assert out["value_per_share"] == pytest.approx(expected, abs=1e-4)
    assert out["contributions"]["risk"]["multiplier"] == pytest.approx(0.85)
    assert out["contributions"]["sentiment"]["multiplier"] == pytest.approx(1.05)


@pytest.mark.parametrize(("risk_score", "sentiment"), [(0, -1), (37.5, 0.3), (88, -0.6)])
def test_contributions_add_up_to_the_value(risk_score: float, sentiment: float) -> None:
    (out,) = predict([instance(1.7)], risk_score=risk_score, sentiment=sentiment)
    parts = out["contributions"]
    total = sum(parts[role]["effect_per_share"] for role in ("dcf", "cca", "risk", "sentiment"))
    assert total == pytest.approx(out["value_per_share"], abs=1e-3)


def test_interval_follows_the_normal_approximation() -> None:
    (out,) = predict([instance()], dcf=20, cca=30, risk_score=50, sentiment=0)
    z95, zq = NormalDist().inv_cdf(0.95), NormalDist().inv_cdf(0.75)
    sd_dcf = (1.2 * 20 - 0.8 * 20) / (2 * z95)
    sd_cca = (1.1 * 30 - 0.9 * 30) / (2 * zq)
    disagreement = math.sqrt(0.6 * 0.4) * abs(20 - 30)
    sigma = math.sqrt((0.6 * sd_dcf) ** 2 + (0.4 * sd_cca) ** 2 + disagreement**2)
    half = NormalDist().inv_cdf(0.95) * sigma  # 90% two-sided
    assert out["interval"]["confidence"] == 0.9
    assert out["interval"]["low"] == pytest.approx(24 - half, abs=1e-3)
    assert out["interval"]["high"] == pytest.approx(24 + half, abs=1e-3)


def test_agreeing_methods_give_a_narrower_interval() -> None:
    (agree,) = predict([instance()], dcf=25, cca=25)
    (disagree,) = predict([instance()], dcf=15, cca=40)
    width = lambda o: o["interval"]["high"] - o["interval"]["low"]  # noqa: E731
    assert width(agree) < width(disagree)


def test_batch_equals_one_by_one() -> None:
    rows = [instance(x) for x in (0.5, 1.0, 2.5, 7.0)]
    assert predict(rows) == [predict([row])[0] for row in rows]


def test_bad_component_inputs_name_the_component_and_field() -> None:
    rows = [instance(), {**instance(), "dcf": {"x": -1.0}, "sentiment": {"y": 1.0}}]
    with pytest.raises(InvalidValuesError) as caught:
        predict(rows)
    details = caught.value.details
    fields = {d["field"] for d in details}
    assert fields == {"instances[1].dcf.x", "instances[1].sentiment.x", "instances[1].sentiment.y"}
    assert {d["component"] for d in details} == {"dcf", "sentiment"}


def test_missing_component_input_is_422_on_the_envelope() -> None:
    row = instance()
    del row["cca"]
    with pytest.raises(Exception, match="cca"):
        RUNTIME.instances_adapter().validate_python([row])


def test_composite_is_declared() -> None:
    assert RUNTIME.components() == {r: r for r in ("dcf", "cca", "risk", "sentiment")}
    with pytest.raises(TypeError):
        RUNTIME.predict([], None)


@pytest.mark.parametrize(
    "change",
    [
        {"format": "other/1"},
        {"weights": {"dcf": 0.7, "cca": 0.7}},
        {"components": {"dcf": "dcf"}},
        {"risk_strength": 0.9},
    ],
)
def test_invalid_artifacts_are_refused(change: dict[str, object]) -> None:
    body = {**json.loads(ensemble_builder.artifact()), **change}
    with pytest.raises(IntegrityError):
        EnsembleRuntime.from_artifact(json.dumps(body).encode())
