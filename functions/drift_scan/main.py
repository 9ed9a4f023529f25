"""Cloud Function entry: `drift_scan`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def drift_scan(request):
    return dispatch("drift_scan", request)
