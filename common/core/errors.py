"""One exception tree for the whole suite.

Every error the platform raises on purpose is a ``ServiceError``: it carries the HTTP
status and a stable machine-readable code, so the one handler in ``common.api.dispatch`` can
map it to the one error shape without knowing where it came from.
"""

from __future__ import annotations

import re
from typing import Any


class ServiceError(Exception):
    """Base of every deliberate error; ``status`` and ``code`` reach the client."""

    status: int = 500
    code: str = "internal"
    public_message: str = "internal error; quote the request id when reporting it"
    """What a client sees of a 5xx: the real message names hosts, paths and keys, so it
    goes to the log only."""

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, Any]:
        if self.status >= 500:
            message, details = self.public_message, []
        else:
            message, details = self.message, self.details
        return {
            "error": {"code": self.code, "message": message, "details": details},
            "request_id": request_id,
        }


class MalformedRequestError(ServiceError):
    status = 400
    code = "malformed_request"


class UnauthenticatedError(ServiceError):
    status = 401
    code = "unauthenticated"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(message, **kwargs)


class ForbiddenError(ServiceError):
    status = 403
    code = "forbidden"


class NotFoundError(ServiceError):
    status = 404
    code = "not_found"


class MethodNotAllowedError(ServiceError):
    status = 405
    code = "method_not_allowed"


class ConflictError(ServiceError):
    """The target already exists, or changed since it was read (a failed precondition)."""

    status = 409
    code = "conflict"


class PreconditionFailedError(ConflictError):
    """A write's precondition (revision, generation) no longer holds."""

    code = "precondition_failed"


class GoneError(ServiceError):
    status = 410
    code = "gone"


class PayloadTooLargeError(ServiceError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    status = 415
    code = "unsupported_media_type"


class UriTooLongError(ServiceError):
    """The request line is over the server's limit; refused before the request is read."""

    status = 414
    code = "uri_too_long"


class HeaderFieldsTooLargeError(ServiceError):
    """Too many header fields, or one too long; refused before the request is read."""

    status = 431
    code = "header_fields_too_large"


_FIELD_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def field_path(field: str | None) -> list[str | int]:
    """``instances[3].revenue`` -> ``["instances", 3, "revenue"]``; ``(body)`` -> ``[]``."""
    if not field or field == "(body)":
        return []
    return [int(i) if i else key for i, key in _FIELD_PART.findall(field)]


def shaped_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A field detail in the documented shape (field, path, rule, message): a client reads
    every 422 the same way, whichever check wrote it."""
    if "field" not in detail:
        return detail  # a gate criterion or a verification report: a shape of its own
    rule = str(detail.get("rule", "invalid"))
    return {
        "field": detail["field"],
        "path": detail.get("path", field_path(detail["field"])),
        "rule": rule,
        "message": detail.get("message", f"{detail['field'] or 'the request'} is invalid ({rule})"),
        **detail,
    }


class InvalidValuesError(ServiceError):
    status = 422
    code = "invalid_values"

    def __init__(self, message: str, **kwargs: Any) -> None:
        details = kwargs.pop("details", None) or []
        super().__init__(message, details=[shaped_detail(d) for d in details], **kwargs)


class RateLimitedError(ServiceError):
    status = 429
    code = "rate_limited"


class UnavailableError(ServiceError):
    """A dependency (store, artifact bucket, secret source) cannot be reached."""

    status = 503
    code = "unavailable"
    public_message = (
        "a service this request depends on is unavailable; retry after the Retry-After delay"
    )

    def __init__(self, message: str, *, retry_after_s: int = 5, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("Retry-After", str(retry_after_s))
        super().__init__(message, headers=headers, **kwargs)


class IntegrityError(ServiceError):
    """Stored bytes do not match their recorded hash: refuse rather than load them."""

    status = 500
    code = "integrity_check_failed"
    public_message = (
        "a stored model artifact failed its integrity check; the model cannot be served "
        "until it is re-registered or restored"
    )


class IncompatibleArtifactError(ServiceError):
    """A verified artifact was built by another library version: loading it could give
    silently different predictions, so it is refused."""

    status = 500
    code = "incompatible_artifact"
    public_message = (
        "a stored model artifact was built with an incompatible library version; the model "
        "cannot be served until it is re-trained and re-registered"
    )


class PickledModelsUnavailableError(ServiceError):
    """A model stored as a joblib pickle reached a function deployed without scikit-learn
    and joblib, which scripts/package.py leaves out unless --with-pickled-models: refused
    by name, not as an ImportError."""

    status = 500
    code = "pickled_models_unavailable"
    public_message = (
        "this model is stored as a scikit-learn pickle and this function was deployed "
        "without scikit-learn; redeploy with pickled models enabled "
        "(scripts/package.py --with-pickled-models) or register the model as a data artifact"
    )
