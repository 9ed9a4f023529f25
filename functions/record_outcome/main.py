"""Cloud Function entry: `record_outcome`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def record_outcome(request: flask.Request) -> flask.Response:
    return dispatch("record_outcome", request)
