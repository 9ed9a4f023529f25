"""What a handler gets and gives back, and the operation table's entry.

Handlers and the dispatch both import this module; neither imports the other's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter, ValidationError

from common.core.errors import ServiceError
from common.security.auth import Principal
from common.services import Services


@dataclass
class Call:
    """What a handler gets: validated input and its collaborators, nothing HTTP-shaped."""

    services: Services
    principal: Principal
    params: dict[str, str]
    query: Mapping[str, str]
    body: Any
    request_id: str
    labels: dict[str, Any] = field(default_factory=dict)
    """Added to the request's log line (model id, version, batch size...)."""


@dataclass(frozen=True)
class Served:
    """A prediction as the payload log may keep it, whatever shape its answer took: the
    instances and parameters in the ``/v1`` shape, and the predictor's answer."""

    instances: list[dict[str, Any]]
    parameters: Mapping[str, Any]
    answer: Mapping[str, Any]
    kind: str
    """The served version's model kind: which prediction fields repeat an input."""


@dataclass(frozen=True)
class Reply:
    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    served: Served | None = None
    """Set by a handler that answered a prediction; the payload log samples these."""


Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    body: TypeAdapter[Any] | None = None

    @cached_property
    def body_optional(self) -> bool:
        """True when every field of the body has a default: a request with no body at all
        then means ``{}`` (``curl -X POST .../v1/jobs/drift-scan`` runs the scan)."""
        if self.body is None:
            return False
        try:
            self.body.validate_python({})
        except (ValidationError, ServiceError):  # some adapters raise their own error shape
            return False
        return True
