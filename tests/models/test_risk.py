"""The risk runtime: labels agree with probabilities, batches equal single rows.

Every behaviour is checked on both artifact forms: the builder's data artifact
(``ipo-risk-linear/1``, JSON) and a user's pickled pipeline (``ipo-risk/1``, joblib).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.core.errors import IntegrityError
from common.models.base import joblib_dump
from common.models.risk import CLASSES, RiskInstance, RiskRuntime, engineer_features, to_matrix
from tests.support.fixtures import SEED, pickled_risk_artifact, risk_pipeline, trained_risk
from tools.training import synthetic
from tools.training.risk_builder import data_artifact


def artifact_of(form: str) -> bytes:
    """risk_pipeline() as a data artifact or as a pickle: one fitted model, two forms."""
    if form == "data":
        return data_artifact(risk_pipeline(), synthetic.generate(200, SEED + 1).X)[0]
    return pickled_risk_artifact()


@pytest.fixture(scope="module", params=["data", "joblib"])
def runtime(request: pytest.FixtureRequest) -> RiskRuntime:
    return RiskRuntime.from_artifact(artifact_of(request.param))


@pytest.fixture(scope="module")
def instances() -> list[RiskInstance]:
    rows = synthetic.generate(300, SEED + 2).rows()
    return [RiskInstance.model_validate(r) for r in rows]


def test_outputs_are_consistent(runtime: RiskRuntime, instances: list[RiskInstance]) -> None:
    for out in runtime.predict(instances, None):
        p = out["probabilities"]
        assert set(p) == set(CLASSES)
        assert sum(p.values()) == pytest.approx(1.0, abs=1e-5)
        assert out["risk_class"] == max(p, key=p.get)
        assert out["risk_score"] == pytest.approx(100 * (0.5 * p["medium"] + p["high"]), abs=1e-3)


def test_batch_equals_one_by_one(runtime: RiskRuntime, instances: list[RiskInstance]) -> None:
    batch = runtime.predict(instances, None)
    assert batch == [runtime.predict([x], None)[0] for x in instances]


def test_model_learns_the_mechanism(runtime: RiskRuntime) -> None:
    """On fresh data the classifier is far better than the 40% of always saying 'medium'."""
    data = synthetic.generate(2000, SEED + 3)
    predicted = [
        o["risk_class"]
        for o in runtime.predict([RiskInstance.model_validate(r) for r in data.rows()], None)
    ]
    assert np.mean(np.array(predicted) == data.y) > 0.75


def test_riskier_fundamentals_score_higher(runtime: RiskRuntime) -> None:
    safe = RiskInstance(
        sector="manufacturing",
        revenue_musd=5000,
        revenue_growth=0.05,
        operating_margin=0.25,
        debt_to_equity=0.3,
        company_age_years=40,
        offering_size_musd=800,
        underwriter_rank=9,
        market_volatility=12,
        insider_ownership=0.5,
    )
    risky = safe.model_copy(
        update={
            "sector": "healthcare",
            "revenue_musd": 2.0,
            "operating_margin": -1.5,
            "debt_to_equity": 6.0,
            "company_age_years": 2,
            "market_volatility": 45,
            "underwriter_rank": 2,
        }
    )
    low, high = runtime.predict([safe, risky], None)
    assert low["risk_class"] == "low"
    assert high["risk_class"] == "high"


def test_feature_engineering_one_hot_and_logs() -> None:
    x = RiskInstance(
        sector="finance",
        revenue_musd=np.e - 1,
        revenue_growth=0.1,
        operating_margin=0.1,
        debt_to_equity=0.0,
        company_age_years=1,
        offering_size_musd=1,
        underwriter_rank=5,
        market_volatility=20,
        insider_ownership=0.3,
    )
    row = engineer_features(to_matrix([x]))[0]
    assert row[:5].tolist() == [0, 0, 1, 0, 0]
    assert row[5] == pytest.approx(1.0)  # log1p(e - 1)


def test_foreign_artifacts_are_refused() -> None:
    foreign = [
        joblib_dump({"format": "something-else"}),
        joblib_dump([1, 2, 3]),
        json.dumps({"format": "ipo-risk/1"}).encode(),  # a pipeline cannot be JSON
        json.dumps([1, 2, 3]).encode(),
        b"\x00\x01 not an artifact",
    ]
    for data in foreign:
        with pytest.raises(IntegrityError):
            RiskRuntime.from_artifact(data)


def test_builders_artifact_is_data() -> None:
    assert json.loads(trained_risk().artifact)["format"] == "ipo-risk-linear/1"
    assert trained_risk().tags["artifact_format"] == "ipo-risk-linear/1"


def test_both_forms_of_one_pipeline_answer_alike(instances: list[RiskInstance]) -> None:
    data, pickled = (RiskRuntime.from_artifact(artifact_of(f)) for f in ("data", "joblib"))
    assert data.predict(instances, None) == pickled.predict(instances, None)


@pytest.mark.parametrize("form", ["data", "joblib"])
def test_top_features_explain_the_predicted_class(form: str, instances: list[RiskInstance]) -> None:
    from common.models.risk import FEATURES

    runtime = RiskRuntime.from_artifact(artifact_of(form))
    fitted = risk_pipeline()
    classes = list(fitted.classes_)
    coef = fitted[-1].coef_ - fitted[-1].coef_.mean(axis=0, keepdims=True)
    scaled = fitted[:-1].transform(to_matrix(instances[:5]))
    for out, z in zip(runtime.predict(instances[:5], None), scaled, strict=True):
        parts = z * coef[classes.index(out["risk_class"])]
        per_input = {"sector": parts[:5].sum(), **dict(zip(FEATURES[1:], parts[5:], strict=True))}
        expected = sorted(per_input, key=lambda k: -abs(per_input[k]))[:3]
        assert [t["feature"] for t in out["top_features"]] == expected
        for item in out["top_features"]:
            assert item["contribution"] == pytest.approx(per_input[item["feature"]], abs=1e-4)


def test_loss_making_company_is_high_risk_because_of_its_margin(runtime: RiskRuntime) -> None:
    risky = RiskInstance(
        sector="manufacturing",
        revenue_musd=800,
        revenue_growth=0.05,
        operating_margin=-2.5,
        debt_to_equity=0.5,
        company_age_years=20,
        offering_size_musd=300,
        underwriter_rank=7,
        market_volatility=18,
        insider_ownership=0.4,
    )
    (out,) = runtime.predict([risky], None)
    assert out["risk_class"] == "high"
    top = out["top_features"][0]
    assert top["feature"] == "operating_margin"
    assert top["contribution"] > 0


def test_fast_path_must_agree_with_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from common.models import risk

    real = risk.LinearModel.proba
    monkeypatch.setattr(risk.LinearModel, "proba", lambda self, z: real(self, z) * 1.001)
    with pytest.raises(IntegrityError, match="fast path"):
        RiskRuntime.from_artifact(pickled_risk_artifact())


def test_other_estimators_are_served_by_the_pipeline() -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.tree import DecisionTreeClassifier

    data = synthetic.generate(600, SEED)
    tree = Pipeline(
        [
            ("features", FunctionTransformer(engineer_features)),
            ("classifier", DecisionTreeClassifier(max_depth=4, random_state=0)),
        ]
    ).fit(data.X, data.y)
    runtime = RiskRuntime.from_artifact(pickled_risk_artifact(tree))
    rows = [RiskInstance.model_validate(r) for r in data.rows()[:50]]
    outputs = runtime.predict(rows, None)
    expected = tree.predict(data.X[:50])
    assert [o["risk_class"] for o in outputs] == list(expected)
    assert all(o["top_features"] is None for o in outputs)
