"""Cloud Function entry: `rollback_model`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def rollback_model(request: flask.Request) -> flask.Response:
    return dispatch("rollback_model", request)
