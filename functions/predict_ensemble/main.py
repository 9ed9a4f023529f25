"""Cloud Function entry: `predict_ensemble`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def predict_ensemble(request: flask.Request) -> flask.Response:
    return dispatch("predict_ensemble", request)
