"""Cloud Function entry: `warm_cache`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def warm_cache(request: flask.Request) -> flask.Response:
    return dispatch("warm_cache", request)
