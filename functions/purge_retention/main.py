"""Cloud Function entry: `purge_retention`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def purge_retention(request: flask.Request) -> flask.Response:
    return dispatch("purge_retention", request)
