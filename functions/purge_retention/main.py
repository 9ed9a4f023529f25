"""Cloud Function entry: `purge_retention`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def purge_retention(request):
    return dispatch("purge_retention", request)
