"""Cloud Function entry: `assign_variant`. All logic lives in `common/`."""

import functions_framework

from common.api.dispatch import dispatch


@functions_framework.http
def assign_variant(request):
    return dispatch("assign_variant", request)
