"""Cloud Function entry: `warm_cache`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def warm_cache(request):
    return dispatch("warm_cache", request)
