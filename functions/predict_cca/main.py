"""Cloud Function entry: `predict_cca`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def predict_cca(request):
    return dispatch("predict_cca", request)
