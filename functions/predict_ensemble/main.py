"""Cloud Function entry: `predict_ensemble`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def predict_ensemble(request):
    return dispatch("predict_ensemble", request)
