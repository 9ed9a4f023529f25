"""Cloud Function entry: `experiment_results`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def experiment_results(request: flask.Request) -> flask.Response:
    return dispatch("experiment_results", request)
