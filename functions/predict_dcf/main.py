"""Cloud Function entry: `predict_dcf`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def predict_dcf(request):
    return dispatch("predict_dcf", request)
