"""Cloud Function entry: `promote_model`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def promote_model(request):
    return dispatch("promote_model", request)
