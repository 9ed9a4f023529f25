"""Deserialising model artifacts: a scikit-learn version mismatch refuses to load."""

from __future__ import annotations

import io

import joblib
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression

from common.core.errors import IncompatibleArtifactError
from common.models.base import joblib_load


def test_an_artifact_from_another_scikit_learn_version_is_an_error() -> None:
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    current = sklearn.__version__.encode()
    older = b"0" + current[1:]  # same length, so the pickle stays well-formed
    stale = buffer.getvalue().replace(current, older)
    assert stale != buffer.getvalue()
    with pytest.raises(IncompatibleArtifactError, match="scikit-learn 0"):
        joblib_load(stale)
    assert joblib_load(buffer.getvalue()).predict([[3.0]])[0] == 1
