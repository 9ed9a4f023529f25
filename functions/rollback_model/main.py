"""Cloud Function entry: `rollback_model`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def rollback_model(request):
    return dispatch("rollback_model", request)
