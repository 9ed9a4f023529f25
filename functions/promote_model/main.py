"""Cloud Function entry: `promote_model`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def promote_model(request: flask.Request) -> flask.Response:
    return dispatch("promote_model", request)
