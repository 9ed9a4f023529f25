"""Model runtimes, one per kind, and the pool of loaded models.

Runtimes are imported only when a model of their kind is served. No runtime imports
scikit-learn for the artifacts the builders write (all JSON); only a user's own pickled
pipeline does, when it is loaded.
"""

from __future__ import annotations

import importlib

from common.core.errors import IntegrityError
from common.models.base import ModelRuntime

_KINDS = {
    "cca": ("common.models.cca", "CcaRuntime"),
    "dcf": ("common.models.dcf", "DcfRuntime"),
    "ensemble": ("common.models.ensemble", "EnsembleRuntime"),
    "risk": ("common.models.risk", "RiskRuntime"),
    "sentiment": ("common.models.sentiment", "SentimentRuntime"),
}


def kinds() -> list[str]:
    return sorted(_KINDS)


def runtime_class(kind: str) -> type[ModelRuntime]:
    """The runtime of a kind; a record naming an unknown kind cannot be served (500)."""
    try:
        module_name, class_name = _KINDS[kind]
    except KeyError:
        raise IntegrityError(
            f"model kind {kind!r} is not known to this code; known kinds: {', '.join(kinds())}"
        ) from None
    runtime: type[ModelRuntime] = getattr(importlib.import_module(module_name), class_name)
    return runtime
