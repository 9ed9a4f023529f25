"""Cloud Function entry: `predict_dcf`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def predict_dcf(request: flask.Request) -> flask.Response:
    return dispatch("predict_dcf", request)
