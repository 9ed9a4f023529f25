"""Cloud Function entry: `register_model`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def register_model(request):
    return dispatch("register_model", request)
