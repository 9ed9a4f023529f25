"""Every model's builder, by model id, in the order they are built and registered.

The ensemble comes last: it is built against the production versions of the components
registered before it, so it alone is handed the registry.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from common.registry.records import Registry
from tools.training.base import BuiltModel

BUILDERS: dict[str, str] = {
    "risk": "tools.training.risk_builder",
    "dcf": "tools.training.dcf_builder",
    "cca": "tools.training.cca_builder",
    "sentiment": "tools.training.sentiment_builder",
    "ensemble": "tools.training.ensemble_builder",
}
NEEDS_REGISTRY = frozenset({"ensemble"})


def build(
    model_id: str, *, seed: int, data: Path | None = None, registry: Registry | None = None
) -> list[BuiltModel]:
    module = importlib.import_module(BUILDERS[model_id])
    if model_id in NEEDS_REGISTRY:
        built: list[BuiltModel] = module.build(seed=seed, data=data, registry=registry)
    else:
        built = module.build(seed=seed, data=data)
    return built
