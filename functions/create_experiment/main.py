"""Cloud Function entry: `create_experiment`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def create_experiment(request: flask.Request) -> flask.Response:
    return dispatch("create_experiment", request)
