"""Named tensors as the Open Inference Protocol describes them, and a version's set of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FP64, INT64, BOOL, BYTES = "FP64", "INT64", "BOOL", "BYTES"
TEXT, JSON = "str", "json"
"""``content_type`` of a BYTES tensor: plain text, or one JSON document per row."""


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: a field of every row, so its first dimension is the batch."""

    name: str
    datatype: str
    shape: tuple[int, ...] = (-1,)
    optional: bool = False
    content_type: str | None = None

    @property
    def path(self) -> list[str]:
        return self.name.split(".")

    @property
    def vector(self) -> bool:
        return len(self.shape) == 2

    def metadata(self, *, inputs: bool) -> dict[str, Any]:
        parameters: dict[str, Any] = {"optional": self.optional} if inputs else {}
        if self.content_type is not None:
            parameters["content_type"] = self.content_type
        out: dict[str, Any] = {"name": self.name, "datatype": self.datatype}
        out["shape"] = list(self.shape)
        if parameters:
            out["parameters"] = parameters
        return out


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_names", frozenset(s.name for s in self.inputs))
