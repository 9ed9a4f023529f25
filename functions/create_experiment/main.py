"""Cloud Function entry: `create_experiment`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def create_experiment(request):
    return dispatch("create_experiment", request)
