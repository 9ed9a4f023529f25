"""Cloud Function entry: `list_models`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def list_models(request: flask.Request) -> flask.Response:
    return dispatch("list_models", request)
