"""Cloud Function entry: `predict_risk`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def predict_risk(request):
    return dispatch("predict_risk", request)
