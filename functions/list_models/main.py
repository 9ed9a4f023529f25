"""Cloud Function entry: `list_models`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def list_models(request):
    return dispatch("list_models", request)
