"""Every model's builder, by model id, in the order they are built and registered.

The ensemble comes last: it is validated against the components registered before it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from common.training.base import BuiltModel

Builder = Callable[..., list[BuiltModel]]

BUILDERS: dict[str, str] = {
    "risk": "common.training.risk_trainer",
}


def builder(model_id: str) -> Builder:
    module = importlib.import_module(BUILDERS[model_id])
    build: Builder = module.build
    return build


def build(model_id: str, *, seed: int, data: Path | None = None) -> list[BuiltModel]:
    return builder(model_id)(seed=seed, data=data)
