"""Cloud Function entry: `experiment_results`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def experiment_results(request):
    return dispatch("experiment_results", request)
