"""Cloud Function entry: `compliance_scan`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def compliance_scan(request):
    return dispatch("compliance_scan", request)
