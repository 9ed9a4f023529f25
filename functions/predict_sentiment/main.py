"""Cloud Function entry: `predict_sentiment`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def predict_sentiment(request):
    return dispatch("predict_sentiment", request)
