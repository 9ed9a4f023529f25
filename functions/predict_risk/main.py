"""Cloud Function entry: `predict_risk`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def predict_risk(request: flask.Request) -> flask.Response:
    return dispatch("predict_risk", request)
