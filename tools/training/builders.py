"""Every model's builder, by model id: ``tools/training/<model>_builder.py`` for each model
the API serves (its prediction routes in ``common/api/openapi.yaml``).

A builder whose ``build`` takes ``registry`` combines models registered before it (the
ensemble): it is handed the registry and built after every other.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from common.api.routes import served_models
from common.registry.records import Registry
from tools.training.base import BuiltModel

BUILDERS: dict[str, str] = {m: f"tools.training.{m}_builder" for m in served_models()}


def _module(model_id: str) -> ModuleType:
    return importlib.import_module(BUILDERS[model_id])


def needs_registry(model_id: str) -> bool:
    return "registry" in inspect.signature(_module(model_id).build).parameters


def build_order(model_ids: Iterable[str]) -> list[str]:
    """The ids in the order they can be built: those that combine others last."""
    return sorted(model_ids, key=needs_registry)


def build(
    model_id: str, *, seed: int, data: Path | None = None, registry: Registry | None = None
) -> list[BuiltModel]:
    module = _module(model_id)
    if needs_registry(model_id):
        built: list[BuiltModel] = module.build(seed=seed, data=data, registry=registry)
    else:
        built = module.build(seed=seed, data=data)
    return built
