"""Cloud Function entry: `register_model`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def register_model(request: flask.Request) -> flask.Response:
    return dispatch("register_model", request)
