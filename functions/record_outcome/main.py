"""Cloud Function entry: `record_outcome`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def record_outcome(request):
    return dispatch("record_outcome", request)
