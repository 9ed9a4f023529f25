"""Cloud Function entry: `drift_scan`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def drift_scan(request: flask.Request) -> flask.Response:
    return dispatch("drift_scan", request)
