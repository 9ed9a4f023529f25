"""Cloud Function entry: `batch_jobs`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def batch_jobs(request: flask.Request) -> flask.Response:
    return dispatch("batch_jobs", request)
