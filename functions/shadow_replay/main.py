"""Cloud Function entry: `shadow_replay`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def shadow_replay(request: flask.Request) -> flask.Response:
    return dispatch("shadow_replay", request)
