"""Cloud Function entry: `assign_variant`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def assign_variant(request: flask.Request) -> flask.Response:
    return dispatch("assign_variant", request)
