"""A function packaged without scikit-learn and joblib (scripts/package.py's default) that
meets a pickled model answers a named 500, not an ImportError."""

from __future__ import annotations

import sys

import pytest

from common.core.errors import PickledModelsUnavailableError
from common.models import runtime_class
from tests.support.fixtures import pickled_risk_artifact


@pytest.fixture
def without_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports of scikit-learn and joblib fail, as in an archive without them."""
    for name in [m for m in sys.modules if m.split(".")[0] in {"sklearn", "joblib"}]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("sklearn", "sklearn.exceptions", "joblib"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("kind", ["risk", "sentiment"])
def test_a_pickled_artifact_is_refused_by_name(kind: str, request: pytest.FixtureRequest) -> None:
    data = pickled_risk_artifact()  # pickled while scikit-learn is still importable
    request.getfixturevalue("without_scikit_learn")
    with pytest.raises(PickledModelsUnavailableError) as caught:
        runtime_class(kind).from_artifact(data)
    error = caught.value
    assert error.status == 500
    assert "joblib" in error.message
    assert "--with-pickled-models" in error.message
    body = error.body("req-1")["error"]
    assert body["code"] == "pickled_models_unavailable"
    assert "deployed without scikit-learn" in body["message"]
