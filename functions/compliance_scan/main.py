"""Cloud Function entry: `compliance_scan`. All logic lives in `common/`."""

from __future__ import annotations

import flask
import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def compliance_scan(request: flask.Request) -> flask.Response:
    return dispatch("compliance_scan", request)
